/* Fast decoder for version-2 record values (see codec.py for the layout).
 *
 * configure(Record, PackedMetadata); decode_v2(value) -> Record | NotImplemented;
 * read_row(get, row) and read_rows(get, rows): LMDB row key, lookup and decode in one call.
 * ArrowRows(n, columns), arrow_row(rows, row), arrow_rows(rows, [row, ...]): the same Record from
 * an Arrow shard's column buffers (section "ArrowRows" below). StoreIndex: store[i] in C.
 *
 * Walks the msgpack array of a version-2 value once, copies the array buffer into one writable
 * bytearray (plus 3 bytes for pbc) and hands out numpy views of it, then fills a new Record's
 * __dict__ directly (as codec.py's pure-Python fast path does). The metadata map is not
 * decoded: its msgpack bytes are stored as ``metadata`` (a ``schema.PackedMetadata``, a bytes
 * subclass) and ``schema.Record`` unpacks them on first access (training never reads metadata; on
 * real OMol25 rows it was 60% of the decode time).
 *
 * Anything this decoder does not recognise exactly (another version, a type it does not
 * expect at a position, a size mismatch, invalid UTF-8) returns NotImplemented, and codec.py
 * decodes the value in Python, which gives the same Record or raises the documented error.
 * So this file only ever has to be fast on well-formed values, never to report errors.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>
#include <string.h>
#ifndef _WIN32
#include <pthread.h>
#endif
#include "pythread.h"

typedef struct {
    const unsigned char *p;
    const unsigned char *end;
} Cursor;

static PyArray_Descr *g_f8, *g_i8, *g_bool;
static PyObject *g_keys[21];
static PyObject *g_template; /* {field: None for every field of Record}, in field order */
static PyObject *g_dunder_dict; /* "__dict__" */
enum {
    K_NUMBERS, K_POSITIONS, K_ID, K_DATASET, K_TASK, K_CELL, K_PBC, K_ENERGY, K_ENERGY_KIND,
    K_FORCES, K_STRESS, K_MAGMOMS, K_CHARGE, K_SPIN, K_FIXED, K_TAGS, K_WEIGHT, K_SOURCE_FILE,
    K_SOURCE_INDEX, K_METADATA, K_COUNT
};
static const char *g_key_names[K_COUNT] = {
    "numbers", "positions", "id", "dataset", "task", "cell", "pbc", "energy", "energy_kind",
    "forces", "stress", "magmoms", "charge", "spin", "fixed", "tags", "weight", "source_file",
    "source_index", "metadata"
};

static inline int need(Cursor *c, Py_ssize_t n) { return (c->end - c->p) >= n; }

static inline uint64_t be(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int k = 0; k < n; k++) v = (v << 8) | p[k];
    return v;
}

/* Read an integer; returns 0 on success. */
static int read_int(Cursor *c, int64_t *out, int *is_unsigned_big, uint64_t *uout) {
    if (!need(c, 1)) return -1;
    unsigned char t = *c->p;
    *is_unsigned_big = 0;
    if (t <= 0x7f) { *out = t; c->p += 1; return 0; }
    if (t >= 0xe0) { *out = (int8_t)t; c->p += 1; return 0; }
    int size; int sign;
    switch (t) {
        case 0xcc: size = 1; sign = 0; break;
        case 0xcd: size = 2; sign = 0; break;
        case 0xce: size = 4; sign = 0; break;
        case 0xcf: size = 8; sign = 0; break;
        case 0xd0: size = 1; sign = 1; break;
        case 0xd1: size = 2; sign = 1; break;
        case 0xd2: size = 4; sign = 1; break;
        case 0xd3: size = 8; sign = 1; break;
        default: return -1;
    }
    if (!need(c, 1 + size)) return -1;
    uint64_t v = be(c->p + 1, size);
    c->p += 1 + size;
    if (sign) {
        switch (size) {
            case 1: *out = (int8_t)v; break;
            case 2: *out = (int16_t)v; break;
            case 4: *out = (int32_t)v; break;
            default: *out = (int64_t)v; break;
        }
    } else if (v > (uint64_t)INT64_MAX) {
        *is_unsigned_big = 1; *uout = v;
    } else {
        *out = (int64_t)v;
    }
    return 0;
}

/* Length-prefixed str or bin: sets data and len; kind 1 = str, 2 = bin. */
static int read_blob(Cursor *c, const unsigned char **data, Py_ssize_t *len, int *kind) {
    if (!need(c, 1)) return -1;
    unsigned char t = *c->p;
    int hdr; uint64_t n;
    if (t >= 0xa0 && t <= 0xbf) { *kind = 1; hdr = 1; n = t & 0x1f; }
    else {
        switch (t) {
            case 0xd9: *kind = 1; hdr = 2; break;
            case 0xda: *kind = 1; hdr = 3; break;
            case 0xdb: *kind = 1; hdr = 5; break;
            case 0xc4: *kind = 2; hdr = 2; break;
            case 0xc5: *kind = 2; hdr = 3; break;
            case 0xc6: *kind = 2; hdr = 5; break;
            default: return -1;
        }
        if (!need(c, hdr)) return -1;
        n = be(c->p + 1, hdr - 1);
    }
    if (!need(c, hdr) || (uint64_t)(c->end - c->p - hdr) < n) return -1;
    *data = c->p + hdr;
    *len = (Py_ssize_t)n;
    c->p += hdr + n;
    return 0;
}

/* One scalar (nil, bool, int, float, str, bin) as a new reference; NULL without an exception
 * set when the next object is something else (or malformed). */
static PyObject *read_scalar(Cursor *c) {
    if (!need(c, 1)) return NULL;
    unsigned char t = *c->p;
    if (t == 0xc0) { c->p++; Py_RETURN_NONE; }
    if (t == 0xc2) { c->p++; Py_RETURN_FALSE; }
    if (t == 0xc3) { c->p++; Py_RETURN_TRUE; }
    if (t == 0xcb) {
        if (!need(c, 9)) return NULL;
        uint64_t bits = be(c->p + 1, 8);
        double d; memcpy(&d, &bits, 8);
        c->p += 9;
        return PyFloat_FromDouble(d);
    }
    if (t == 0xca) {
        if (!need(c, 5)) return NULL;
        uint32_t bits = (uint32_t)be(c->p + 1, 4);
        float f; memcpy(&f, &bits, 4);
        c->p += 5;
        return PyFloat_FromDouble((double)f);
    }
    if (t <= 0x7f || t >= 0xe0 || (t >= 0xcc && t <= 0xd3)) {
        int64_t v; int big; uint64_t u;
        if (read_int(c, &v, &big, &u)) return NULL;
        return big ? PyLong_FromUnsignedLongLong(u) : PyLong_FromLongLong(v);
    }
    const unsigned char *data; Py_ssize_t len; int kind;
    if (read_blob(c, &data, &len, &kind)) return NULL;
    if (kind == 2) return PyBytes_FromStringAndSize((const char *)data, len);
    PyObject *s = PyUnicode_DecodeUTF8((const char *)data, len, NULL);
    if (s == NULL) PyErr_Clear(); /* invalid UTF-8: let the Python path raise */
    return s;
}

/* Strings that repeat across records (dataset, task, energy_kind, source_file): the last value
 * seen at each position is reused when the bytes match (no new str per record; the GIL is held
 * for the whole decode, so the cache needs no lock). */
static PyObject *g_last[16];

/* data[:len] as a str, reusing *last when it holds the same text and remembering the new one
 * there otherwise; NULL without an exception set for invalid UTF-8 (the caller's fallback) */
static PyObject *repeated_str(PyObject **last, const char *data, Py_ssize_t len) {
    if (*last != NULL) {
        Py_ssize_t n;
        const char *u = PyUnicode_AsUTF8AndSize(*last, &n);
        if (u != NULL && n == len && memcmp(u, data, len) == 0) return Py_NewRef(*last);
        PyErr_Clear();
    }
    PyObject *s = PyUnicode_DecodeUTF8(data, len, NULL);
    if (s == NULL) { PyErr_Clear(); return NULL; }
    Py_XSETREF(*last, Py_NewRef(s));
    return s;
}

static PyObject *read_repeated(Cursor *c, int slot) {
    const unsigned char *save = c->p;
    const unsigned char *data; Py_ssize_t len; int kind;
    if (read_blob(c, &data, &len, &kind) || kind != 1) { c->p = save; return read_scalar(c); }
    return repeated_str(&g_last[slot], (const char *)data, len);
}

/* Skip one msgpack object of any type; 0 on success. depth guards hostile nesting. */
static int skip(Cursor *c, int depth) {
    if (depth > 512 || !need(c, 1)) return -1;
    unsigned char t = *c->p;
    uint64_t count = 0; int pairs = 0, hdr = 1;
    if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3) { c->p++; return 0; }
    if (t >= 0x80 && t <= 0x8f) { count = t & 0x0f; pairs = 1; }
    else if (t >= 0x90 && t <= 0x9f) { count = t & 0x0f; }
    else if ((t >= 0xa0 && t <= 0xbf) || (t >= 0xc4 && t <= 0xc6) || (t >= 0xd9 && t <= 0xdb)) {
        const unsigned char *d; Py_ssize_t n; int kind;
        return read_blob(c, &d, &n, &kind);
    } else {
        Py_ssize_t fixed = -1;
        switch (t) {
            case 0xcc: case 0xd0: fixed = 2; break;
            case 0xcd: case 0xd1: fixed = 3; break;
            case 0xce: case 0xd2: case 0xca: fixed = 5; break;
            case 0xcf: case 0xd3: case 0xcb: fixed = 9; break;
            case 0xd4: fixed = 3; break;  /* fixext 1: type + 1 */
            case 0xd5: fixed = 4; break;
            case 0xd6: fixed = 6; break;
            case 0xd7: fixed = 10; break;
            case 0xd8: fixed = 18; break;
            default: break;
        }
        if (fixed > 0) { if (!need(c, fixed)) return -1; c->p += fixed; return 0; }
        int lenb;
        switch (t) {
            case 0xc7: lenb = 1; break;  /* ext 8/16/32: len, type, data */
            case 0xc8: lenb = 2; break;
            case 0xc9: lenb = 4; break;
            case 0xdc: hdr = 3; break;
            case 0xdd: hdr = 5; break;
            case 0xde: hdr = 3; pairs = 1; break;
            case 0xdf: hdr = 5; pairs = 1; break;
            default: return -1;  /* 0xc1 is never used */
        }
        if (t >= 0xc7 && t <= 0xc9) {
            if (!need(c, 2 + lenb)) return -1;
            uint64_t n = be(c->p + 1, lenb);
            if ((uint64_t)(c->end - c->p - 2 - lenb) < n) return -1;
            c->p += 2 + lenb + n;
            return 0;
        }
        if (!need(c, hdr)) return -1;
        count = be(c->p + 1, hdr - 1);
    }
    c->p += hdr;
    if (pairs) count *= 2;
    for (uint64_t k = 0; k < count; k++)
        if (skip(c, depth + 1)) return -1;
    return 0;
}

/* A writable view of base's memory at byte offset. Steals nothing; returns a new reference. */
static PyObject *view(PyObject *base, char *data, PyArray_Descr *descr, int nd, npy_intp d0, npy_intp d1) {
    npy_intp dims[2] = {d0, d1};
    Py_INCREF(descr);
    PyObject *arr = PyArray_NewFromDescr(&PyArray_Type, descr, nd, dims, NULL, data,
                                         NPY_ARRAY_CARRAY, NULL);
    if (arr == NULL) return NULL;
    Py_INCREF(base);
    if (PyArray_SetBaseObject((PyArrayObject *)arr, base) < 0) { Py_DECREF(arr); return NULL; }
    return arr;
}

/* set once by configure(): the Record type and the bytes subclasses that mark packed metadata
 * (msgpack from LMDB values, JSON from Arrow shards) */
static PyObject *record_type, *packed_type, *packed_json_type;

static PyObject *configure(PyObject *self, PyObject *args) {
    PyObject *t, *p, *j = NULL;
    if (!PyArg_ParseTuple(args, "O!O!|O!", &PyType_Type, &t, &PyType_Type, &p, &PyType_Type, &j)) return NULL;
    if (!PyType_IsSubtype((PyTypeObject *)p, &PyBytes_Type)
        || (j != NULL && !PyType_IsSubtype((PyTypeObject *)j, &PyBytes_Type))) {
        PyErr_SetString(PyExc_TypeError,
                        "configure(Record, PackedMetadata[, PackedJsonMetadata]): the markers must subclass bytes");
        return NULL;
    }
    Py_INCREF(t); Py_INCREF(p); Py_XINCREF(j);
    Py_XSETREF(record_type, t); Py_XSETREF(packed_type, p); Py_XSETREF(packed_json_type, j);
    Py_RETURN_NONE;
}

/* type(data[:len]) for a bytes subclass `type` (PackedMetadata, PackedJsonMetadata), allocated
 * directly with the layout CPython's bytes has had through 3.14 (ob_shash -1 = hash not yet computed, a NUL after the
 * data; ob_shash is marked deprecated since 3.11 but bytes_hash still reads it); through the type
 * call on any other version (two allocations and a call, ~80 ns more). */
static PyObject *new_packed(PyObject *type, const char *data, Py_ssize_t len) {
#if PY_VERSION_HEX < 0x030F0000 && !defined(Py_LIMITED_API)
    PyTypeObject *t = (PyTypeObject *)type;
    if (t->tp_basicsize == PyBytes_Type.tp_basicsize && t->tp_itemsize == 1 && t->tp_dictoffset == 0) {
        PyBytesObject *b = (PyBytesObject *)t->tp_alloc(t, len);  /* zeroed, ob_size = len */
        if (b == NULL) return NULL;
#ifdef _Py_COMP_DIAG_PUSH
_Py_COMP_DIAG_PUSH
_Py_COMP_DIAG_IGNORE_DEPR_DECLS
        b->ob_shash = -1;
_Py_COMP_DIAG_POP
#else
        b->ob_shash = -1;
#endif
        memcpy(b->ob_sval, data, len);
        b->ob_sval[len] = 0;
        return (PyObject *)b;
    }
#endif
    PyObject *raw = PyBytes_FromStringAndSize(data, len);
    if (raw == NULL) return NULL;
    PyObject *packed = PyObject_CallOneArg(type, raw);
    Py_DECREF(raw);
    return packed;
}

/* A new Record whose __dict__ is `dict` (no __init__: the callers guarantee dtypes and shapes). */
static PyObject *record_with_dict(PyObject *dict) {
    PyObject *result = ((PyTypeObject *)record_type)->tp_alloc((PyTypeObject *)record_type, 0);
    if (result == NULL) return NULL;
#if PY_VERSION_HEX >= 0x030D0000
    /* 3.13 keeps a new object's attributes in inline values, and PyObject_GenericSetDict swaps the
     * dict pointer without retiring them (attribute lookups then miss): go through the type's
     * __dict__ setter, as `record.__dict__ = d` does */
    if (PyObject_SetAttr(result, g_dunder_dict, dict) < 0) { Py_DECREF(result); return NULL; }
#else
    if (PyObject_GenericSetDict(result, dict, NULL) < 0) { Py_DECREF(result); return NULL; }
#endif
    return result;
}

/* decode the version-2 value at data[:len] (the bytes are copied, never kept); `fresh` is NULL
 * or a copy of g_template made ahead (stolen) */
static PyObject *decode_buf(const unsigned char *data, Py_ssize_t len, PyObject *fresh) {
    PyObject *result = NULL, *dict = fresh, *base = NULL;
    PyObject *scalars[16] = {NULL};
    /* arrays not yet handed to the dict (each is set to NULL once it is) */
    PyObject *positions = NULL, *cell = NULL, *forces = NULL, *stress = NULL, *magmoms = NULL;
    PyObject *tags = NULL, *numbers = NULL, *fixed = NULL, *pbc = NULL;
    Cursor c = {data, data + len};
    if (record_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_fastcodec.configure() has not been called");
        goto error;
    }

    /* header: an array of exactly 16 */
    if (!need(&c, 1)) goto fallback;
    if (*c.p == 0xdc) {
        if (!need(&c, 3) || be(c.p + 1, 2) != 16) goto fallback;
        c.p += 3;
    } else if (*c.p == 0xdd) {
        if (!need(&c, 5) || be(c.p + 1, 4) != 16) goto fallback;
        c.p += 5;
    } else goto fallback;  /* fixarray holds at most 15: not version 2 */

    int64_t version, n, flags, pbc_bits; int big; uint64_t u;
    if (read_int(&c, &version, &big, &u) || big || version != 2) goto fallback;
    if ((scalars[1] = read_scalar(&c)) == NULL) goto fallback;
    for (int k = 2; k <= 3; k++) if ((scalars[k] = read_repeated(&c, k)) == NULL) goto fallback;
    if (read_int(&c, &n, &big, &u) || big || n < 0) goto fallback;
    if (read_int(&c, &flags, &big, &u) || big) goto fallback;
    if (read_int(&c, &pbc_bits, &big, &u) || big || pbc_bits < 0 || pbc_bits > 7) goto fallback;
    const unsigned char *B; Py_ssize_t blen; int kind;
    if (read_blob(&c, &B, &blen, &kind) || kind != 2) goto fallback;
    for (int k = 8; k <= 14; k++) {
        scalars[k] = (k == 9 || k == 13) ? read_repeated(&c, k) : read_scalar(&c);
        if (scalars[k] == NULL) goto fallback;
    }
    const unsigned char *meta = c.p;
    /* metadata is a map or nil; anything else (never written by encode_record) goes to Python */
    if (!need(&c, 1) || !(*meta == 0xc0 || (*meta >= 0x80 && *meta <= 0x8f) || *meta == 0xde || *meta == 0xdf))
        goto fallback;
    if (skip(&c, 0) || c.p != c.end) goto fallback;
    Py_ssize_t meta_len = c.end - meta;

    /* the sizes the flags imply must add up to the buffer exactly */
    if (n > blen) goto fallback;
    Py_ssize_t need_bytes = 8 * n;  /* numbers */
    if (flags & 1) need_bytes += 24 * n;
    if (flags & 2) need_bytes += 72;
    if (flags & 4) need_bytes += 24 * n;
    if (flags & 8) need_bytes += 48;
    if (flags & 16) need_bytes += 8 * n;
    if (flags & 64) need_bytes += 8 * n;
    if (flags & 32) need_bytes += n;
    if (need_bytes != blen) goto fallback;

    base = PyByteArray_FromStringAndSize(NULL, blen + 3);
    if (base == NULL) goto error;
    char *buf = PyByteArray_AS_STRING(base);
    memcpy(buf, B, blen);
    buf[blen] = (pbc_bits & 1) != 0; buf[blen + 1] = (pbc_bits & 2) != 0; buf[blen + 2] = (pbc_bits & 4) != 0;

    /* a copy of a template holding every field (None) is much cheaper than 20 inserts into a
     * growing dict: the copy clones the key table, each set below replaces a value in place */
    if (dict == NULL && (dict = PyDict_Copy(g_template)) == NULL) goto error;
    Py_ssize_t pos = 0;
#define PUT(key, obj) do { PyObject *o_ = (obj); if (o_ == NULL) goto error; \
        int r_ = PyDict_SetItem(dict, g_keys[key], o_); Py_DECREF(o_); if (r_ < 0) goto error; } while (0)
#define PUT_NONE(key) do { } while (0)  /* the template's value already */
    if (flags & 1) { positions = view(base, buf, g_f8, 2, n, 3); if (!positions) goto error; pos = 24 * n; }
    if (flags & 2) { cell = view(base, buf + pos, g_f8, 2, 3, 3); if (!cell) goto error; pos += 72; }
    if (flags & 4) { forces = view(base, buf + pos, g_f8, 2, n, 3); if (!forces) goto error; pos += 24 * n; }
    if (flags & 8) { stress = view(base, buf + pos, g_f8, 1, 6, 0); if (!stress) goto error; pos += 48; }
    if (flags & 16) { magmoms = view(base, buf + pos, g_f8, 1, n, 0); if (!magmoms) goto error; pos += 8 * n; }
    if (flags & 64) { tags = view(base, buf + pos, g_i8, 1, n, 0); if (!tags) goto error; pos += 8 * n; }
    numbers = view(base, buf + pos, g_i8, 1, n, 0); if (!numbers) goto error; pos += 8 * n;  /* fixed follows */
    if (flags & 32) { fixed = view(base, buf + pos, g_bool, 1, n, 0); if (!fixed) goto error; }
    pbc = view(base, buf + blen, g_bool, 1, 3, 0);
    if (!pbc) goto error;

    /* dict insertion order follows Record's fields, as the Python path does */
/* TAKE: hand a pending reference to the dict (cleared first, so the error path never frees it twice) */
#define TAKE(key, slot) do { PyObject *t_ = (slot); (slot) = NULL; PUT(key, t_); } while (0)
#define PUT_ARR(key, a) do { if (a) TAKE(key, a); else PUT_NONE(key); } while (0)
    PUT_ARR(K_NUMBERS, numbers);
    PUT_ARR(K_POSITIONS, positions);
    TAKE(K_ID, scalars[1]);
    TAKE(K_DATASET, scalars[2]);
    TAKE(K_TASK, scalars[3]);
    PUT_ARR(K_CELL, cell);
    PUT_ARR(K_PBC, pbc);
    TAKE(K_ENERGY, scalars[8]);
    TAKE(K_ENERGY_KIND, scalars[9]);
    PUT_ARR(K_FORCES, forces);
    PUT_ARR(K_STRESS, stress);
    PUT_ARR(K_MAGMOMS, magmoms);
    TAKE(K_CHARGE, scalars[10]);
    TAKE(K_SPIN, scalars[11]);
    PUT_ARR(K_FIXED, fixed);
    PUT_ARR(K_TAGS, tags);
    TAKE(K_WEIGHT, scalars[12]);
    TAKE(K_SOURCE_FILE, scalars[13]);
    TAKE(K_SOURCE_INDEX, scalars[14]);
    if (meta_len == 1 && *meta == 0xc0)
        PUT(K_METADATA, PyDict_New());  /* no metadata: the decoded value, {} */
    else {  /* packed: schema._Metadata unpacks it on first access */
        PUT(K_METADATA, new_packed(packed_type, (const char *)meta, meta_len));
    }

    result = record_with_dict(dict);
    if (result == NULL) goto error;
    goto done;

fallback:
    if (!PyErr_Occurred()) { result = Py_NotImplemented; Py_INCREF(result); }
    goto done;
error:
    Py_CLEAR(result);
done:
    for (int k = 0; k < 16; k++) Py_XDECREF(scalars[k]);
    Py_XDECREF(positions); Py_XDECREF(cell); Py_XDECREF(forces); Py_XDECREF(stress);
    Py_XDECREF(magmoms); Py_XDECREF(tags); Py_XDECREF(numbers); Py_XDECREF(fixed); Py_XDECREF(pbc);
    Py_XDECREF(dict);
    Py_XDECREF(base);
    return result;
}

static PyObject *decode_v2(PyObject *self, PyObject *value) {
    Py_buffer view_in;
    if (PyObject_GetBuffer(value, &view_in, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *result = decode_buf((const unsigned char *)view_in.buf, view_in.len, NULL);
    PyBuffer_Release(&view_in);
    return result;
}

/* read_row(get, row): get(b"r" + row as uint64 big-endian) decoded -- LmdbShard.record's
 * key packing, lookup and decode in one call. None when the key is absent; NotImplemented when
 * the value is not a well-formed version-2 record (the caller then reads it in Python). */
static PyObject *read_one_ll(PyObject *get, unsigned long long row) {
    PyObject *key = PyBytes_FromStringAndSize(NULL, 9);
    if (key == NULL) return NULL;
    unsigned char *k = (unsigned char *)PyBytes_AS_STRING(key);
    k[0] = 'r';
    for (int b = 0; b < 8; b++) k[1 + b] = (unsigned char)(row >> (56 - 8 * b));
    PyObject *value = PyObject_CallOneArg(get, key);
    Py_DECREF(key);
    if (value == NULL || value == Py_None) return value;
    PyObject *record = decode_v2(NULL, value);
    Py_DECREF(value);
    return record;
}

static PyObject *read_one(PyObject *get, PyObject *row_obj) {
    unsigned long long row = PyLong_AsUnsignedLongLong(row_obj);
    if (row == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    return read_one_ll(get, row);
}

static PyObject *read_row(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) { PyErr_SetString(PyExc_TypeError, "read_row(get, row)"); return NULL; }
    return read_one(args[0], args[1]);
}

/* ---- LmdbRows: an LMDB shard's rows straight from the mapped file ------------------------------
 *
 * ``lmdb.write_lmdb`` ends every shard with a row table (key ``b"~rows"``): for each row, the
 * file offset of the LMDB leaf node that holds it and the length of its value.
 * ``LmdbRows(buffer, table, n, psize)`` keeps the shard file's read-only mapping (``buffer``; the
 * table's n little-endian uint64 start at byte ``table``), and ``lmdb_row(rows, row)`` reads row
 * ``row`` without LMDB: one table entry, the node, its value, decoded as ``decode_v2`` does. That
 * skips the B-tree descent and py-lmdb's ``get`` (a Python call, a key object, a memoryview):
 * 1.4x faster on a random read of a store larger than the cache, 1.9x with the prefetching
 * below.
 *
 * Nothing in the table is trusted. Every read checks, in the file itself, that the node is the
 * row's: key size 9, key ``b"r" + row`` (uint64 big-endian), flags plain (value in the node) or
 * F_BIGDATA (value on overflow pages, whose page header must carry that page number and the
 * overflow flag), and every offset and size inside the mapping. A row that fails any check gives
 * NotImplemented and the caller reads it through LMDB, which raises if the file is damaged.
 *
 * The layout read here is LMDB 0.9's on a 64-bit little-endian machine (mdb.c: MDB_node is
 * mn_lo, mn_hi, mn_flags, mn_ksize as uint16 then the key; NODEDSZ = mn_lo | mn_hi << 16; a page
 * header is mp_pgno (size_t), mp_pad, mp_flags (uint16), mp_pages (uint32), 16 bytes); the
 * constructor refuses other machines, and the writer writes no table there. */

#define LMDB_NODE_HEADER 8
#define LMDB_PAGE_HEADER 16
#define LMDB_F_BIGDATA 0x01
#define LMDB_P_OVERFLOW 0x04
#define READ_AHEAD 4  /* read_rows: rows asked for ahead of the one being read (5-7% on a batch) */
#define LMDB_ROW_OFFSET_BITS 40  /* a table entry: node offset | min(value length, 2**24 - 1) << 40 */
#define LMDB_ROW_OFFSET_MASK ((UINT64_C(1) << LMDB_ROW_OFFSET_BITS) - 1)

typedef struct {
    PyObject_HEAD
    Py_buffer view;              /* the whole shard file, mapped read-only */
    const unsigned char *table;  /* n little-endian uint64: file offset of row k's leaf node */
    Py_ssize_t n;
    uint64_t psize;              /* LMDB page size of the file */
} LmdbRowsObject;

static PyTypeObject LmdbRowsType;

static inline uint16_t u16_at(const unsigned char *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline uint64_t u64_at(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static void lmdb_rows_dealloc(PyObject *self_) {
    LmdbRowsObject *self = (LmdbRowsObject *)self_;
    if (self->view.obj != NULL) PyBuffer_Release(&self->view);
    Py_TYPE(self_)->tp_free(self_);
}

static PyObject *lmdb_rows_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    PyObject *buffer;
    Py_ssize_t table, n, psize;
    if (kwds != NULL && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "LmdbRows(buffer, table, n, psize) takes no keywords");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "Onnn:LmdbRows", &buffer, &table, &n, &psize)) return NULL;
    const uint16_t probe = 1;
    if (sizeof(size_t) != 8 || *(const unsigned char *)&probe != 1) {
        PyErr_SetString(PyExc_ValueError, "LmdbRows: reads LMDB files of 64-bit little-endian machines only");
        return NULL;
    }
    if (psize < 512 || (psize & (psize - 1)) != 0) {
        PyErr_Format(PyExc_ValueError, "LmdbRows: page size %zd is not a power of two >= 512", psize);
        return NULL;
    }
    LmdbRowsObject *self = (LmdbRowsObject *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    if (PyObject_GetBuffer(buffer, &self->view, PyBUF_SIMPLE) < 0) { Py_DECREF(self); return NULL; }
    if (n < 0 || table < 0 || table > self->view.len || n > (self->view.len - table) / 8) {
        PyErr_Format(PyExc_ValueError, "LmdbRows: a table of %zd rows at byte %zd does not fit in %zd bytes",
                     n, table, self->view.len);
        Py_DECREF(self);
        return NULL;
    }
    self->table = (const unsigned char *)self->view.buf + table;
    self->n = n;
    self->psize = (uint64_t)psize;
    return (PyObject *)self;
}

/* ask for the cache lines of [p, p + len) (at most 64) ahead of their use */
static inline void prefetch_span(const unsigned char *p, uint64_t len) {
#if defined(__GNUC__) || defined(__clang__)
    uint64_t lines = (((uintptr_t)p & 63) + len + 63) / 64;
    if (lines > 64) lines = 64;
    const unsigned char *line = (const unsigned char *)((uintptr_t)p & ~(uintptr_t)63);
    for (uint64_t k = 0; k < lines; k++) __builtin_prefetch(line + 64 * k, 0, 0);
#else
    (void)p; (void)len;
#endif
}

/* row `row` (0 <= row < n) as a Record; NotImplemented when any check fails. The table entry
 * also gives the value's length, so every cache line of the row is asked for at once, and the
 * Record's dict is made while they arrive (on a store larger than the cache this made a random
 * read about 1.3x faster than reading the node first). */
static PyObject *lmdb_record(LmdbRowsObject *self, Py_ssize_t row) {
    const unsigned char *base = (const unsigned char *)self->view.buf;
    const uint64_t size = (uint64_t)self->view.len;
    const uint64_t entry = u64_at(self->table + 8 * row);  /* little-endian: checked by the constructor */
    const uint64_t at = entry & LMDB_ROW_OFFSET_MASK;
    if (size < LMDB_NODE_HEADER + 9 || at > size - LMDB_NODE_HEADER - 9) Py_RETURN_NOTIMPLEMENTED;
    const unsigned char *node = base + at;
    uint64_t hint = LMDB_NODE_HEADER + 9 + (entry >> LMDB_ROW_OFFSET_BITS);  /* node, key and value */
    prefetch_span(node, hint < size - at ? hint : size - at);
    PyObject *dict = PyDict_Copy(g_template);
    if (dict == NULL) return NULL;
    if (u16_at(node + 6) != 9 || node[8] != 'r' || be(node + 9, 8) != (uint64_t)row) goto skip;
    const uint64_t len = (uint64_t)u16_at(node) | ((uint64_t)u16_at(node + 2) << 16);
    const uint16_t flags = u16_at(node + 4);
    const uint64_t data_at = at + LMDB_NODE_HEADER + 9;
    if (flags == 0) {  /* the value follows the key */
        if (len > size - data_at) goto skip;
        return decode_buf(base + data_at, (Py_ssize_t)len, dict);
    }
    if (flags != LMDB_F_BIGDATA || data_at > size - 8) goto skip;
    const uint64_t pgno = u64_at(base + data_at);  /* the value's first overflow page */
    if (pgno > (size - LMDB_PAGE_HEADER) / self->psize) goto skip;
    const uint64_t page = pgno * self->psize;
    if (len > size - page - LMDB_PAGE_HEADER || u64_at(base + page) != pgno
        || !(u16_at(base + page + 10) & LMDB_P_OVERFLOW)) goto skip;
    return decode_buf(base + page + LMDB_PAGE_HEADER, (Py_ssize_t)len, dict);
skip:
    Py_DECREF(dict);
    Py_RETURN_NOTIMPLEMENTED;
}

/* ask for row `row_obj`'s cache lines now, for a read a few rows later (read_rows); a row out of
 * range or not an int is left for the read to report */
static void lmdb_prefetch(PyObject *rows_, PyObject *row_obj) {
    LmdbRowsObject *rows = (LmdbRowsObject *)rows_;
    if (!PyLong_CheckExact(row_obj)) return;
    Py_ssize_t row = PyLong_AsSsize_t(row_obj);
    if (row < 0 || row >= rows->n) { PyErr_Clear(); return; }
    const uint64_t entry = u64_at(rows->table + 8 * row);
    const uint64_t at = entry & LMDB_ROW_OFFSET_MASK, size = (uint64_t)rows->view.len;
    if (at >= size) return;
    const uint64_t hint = LMDB_NODE_HEADER + 9 + (entry >> LMDB_ROW_OFFSET_BITS);
    prefetch_span((const unsigned char *)rows->view.buf + at, hint < size - at ? hint : size - at);
}

/* address(buffer) -> the address of its first byte (lmdb.write_lmdb: where py-lmdb's mapping
 * shows a key, turned into a file offset) */
static PyObject *address(PyObject *self, PyObject *obj) {
    Py_buffer view;
    if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *result = PyLong_FromVoidPtr(view.buf);
    PyBuffer_Release(&view);
    return result;
}

/* row_obj as an index into n rows; -1 with IndexError (TypeError for a non-integer) otherwise */
static Py_ssize_t row_index(PyObject *row_obj, Py_ssize_t n, const char *who) {
    Py_ssize_t row = PyNumber_AsSsize_t(row_obj, PyExc_IndexError);
    if (row == -1 && PyErr_Occurred()) return -1;
    if (row < 0 || row >= n) {
        PyErr_Format(PyExc_IndexError, "%s: row %zd out of range for %zd rows", who, row, n);
        return -1;
    }
    return row;
}

/* (rows, row) with rows of `type`, as lmdb_row and arrow_row take them; 0, or -1 with TypeError */
static int rows_and_row(PyObject *const *args, Py_ssize_t nargs, PyTypeObject *type, const char *usage) {
    if (nargs == 2 && PyObject_TypeCheck(args[0], type)) return 0;
    PyErr_SetString(PyExc_TypeError, usage);
    return -1;
}

static Py_ssize_t table_rows(PyObject *fast);
static PyObject *table_row_at(PyObject *fast, PyObject *row_obj);

/* lmdb_row(rows, row) -> Record | NotImplemented */
static PyObject *lmdb_row(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (rows_and_row(args, nargs, &LmdbRowsType, "lmdb_row(LmdbRows, row)") < 0) return NULL;
    return table_row_at(args[0], args[1]);
}

static PyTypeObject LmdbRowsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "omni_data.store._fastcodec.LmdbRows",
    .tp_basicsize = sizeof(LmdbRowsObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "LmdbRows(buffer, table, n, psize): an LMDB shard's mapped file and row table, for lmdb_row().",
    .tp_dealloc = lmdb_rows_dealloc,
    .tp_new = lmdb_rows_new,
};

static PyTypeObject ArrowRowsType;

/* read_rows(get, rows): [read_row(get, row) for row in rows] without a Python frame per row
 * (Store.get_many); ``get`` may also be a list holding each row's get (rows of several
 * shards), where an Arrow shard's entry is its ArrowRows and an LMDB shard's may be its LmdbRows.
 * Entries that are None or
 * NotImplemented are for the caller to redo. */
static PyObject *read_rows(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) { PyErr_SetString(PyExc_TypeError, "read_rows(get, rows)"); return NULL; }
    PyObject *rows = PySequence_Fast(args[1], "read_rows: rows must be a sequence");
    if (rows == NULL) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(rows);
    int per_row = PyList_CheckExact(args[0]);
    if (per_row && PyList_GET_SIZE(args[0]) != n) {
        Py_DECREF(rows);
        PyErr_SetString(PyExc_ValueError, "read_rows: one get per row");
        return NULL;
    }
    PyObject *out = PyList_New(n);
    if (out == NULL) { Py_DECREF(rows); return NULL; }
    PyObject **items = PySequence_Fast_ITEMS(rows);
    for (Py_ssize_t k = 0; k < n; k++) {
        /* rows of LMDB row tables: ask for the row READ_AHEAD places on now, so the memory
         * reads of several rows overlap (a random read of a large store waits on memory) */
        for (Py_ssize_t j = k ? k + READ_AHEAD : 0; j <= k + READ_AHEAD && j < n; j++) {
            PyObject *ahead = per_row ? PyList_GET_ITEM(args[0], j) : args[0];
            if (Py_TYPE(ahead) == &LmdbRowsType) lmdb_prefetch(ahead, items[j]);
        }
        PyObject *get = per_row ? PyList_GET_ITEM(args[0], k) : args[0];
        PyObject *record = table_rows(get) >= 0 ? table_row_at(get, items[k]) : read_one(get, items[k]);
        if (record == NULL) { Py_DECREF(out); Py_DECREF(rows); return NULL; }
        PyList_SET_ITEM(out, k, record);
    }
    Py_DECREF(rows);
    return out;
}

/* ---- ArrowRows: one row of an Arrow shard as a Record, straight from the column buffers -------
 *
 * ``arrow.ArrowShard`` builds one ArrowRows over the buffers of its (memory-mapped) table:
 * ``ArrowRows(n, columns)``, ``columns`` being, in ``arrow.SCHEMA`` order, one
 * ``(validity, offsets, data)`` triple of buffer objects (or None) per column; a list column
 * gives its child values as ``data``. ``arrow_row(rows, row)`` then reads row ``row`` the way
 * ``ArrowShard.record`` does in Python (same Record, same dtypes; the JSON metadata is left
 * packed as a ``PackedJsonMetadata`` until first read), without a pyarrow or numpy call: a
 * handful of offsets, one bytearray holding every array, numpy views into it.
 *
 * A column given as ``(None, None, None, value)`` holds ``value`` in every row (a scalar column,
 * or None for a list column null throughout) and is read without touching its buffers.
 *
 * The constructor checks every buffer's size against ``n`` once; each read checks its own
 * offsets against the buffer sizes. A row this code does not take exactly (a list whose length
 * does not match ``n_atoms``, invalid UTF-8, a negative count) gives NotImplemented and the
 * Python path reads it, raising the documented error if there is one. */

enum {
    A_ID, A_DATASET, A_TASK, A_N_ATOMS, A_ENERGY, A_ENERGY_KIND, A_CHARGE, A_SPIN, A_WEIGHT,
    A_SOURCE_FILE, A_SOURCE_INDEX, A_METADATA,
    A_NUMBERS, A_POSITIONS, A_CELL, A_PBC, A_FORCES, A_STRESS, A_MAGMOMS, A_FIXED, A_TAGS, A_COUNT
};
/* per column: 's' utf-8 string, 'i' int32, 'f' float64, 'q' int64 (scalars);
 * 'B' list<uint8>, 'F' list<float64>, 'Q' list<int64>, '?' list<bool> (bit-packed values) */
static const char g_arrow_kinds[A_COUNT + 1] = "sSSifSfqfSqsBFF?FFF?Q";

/* a Record's fields in its order: dict key, Arrow column, whether an array */
static const struct { int key, col, array; } g_arrow_fields[] = {
    {K_NUMBERS, A_NUMBERS, 1}, {K_POSITIONS, A_POSITIONS, 1}, {K_ID, A_ID, 0},
    {K_DATASET, A_DATASET, 0}, {K_TASK, A_TASK, 0}, {K_CELL, A_CELL, 1}, {K_PBC, A_PBC, 1},
    {K_ENERGY, A_ENERGY, 0}, {K_ENERGY_KIND, A_ENERGY_KIND, 0}, {K_FORCES, A_FORCES, 1},
    {K_STRESS, A_STRESS, 1}, {K_MAGMOMS, A_MAGMOMS, 1}, {K_CHARGE, A_CHARGE, 0},
    {K_SPIN, A_SPIN, 0}, {K_FIXED, A_FIXED, 1}, {K_TAGS, A_TAGS, 1}, {K_WEIGHT, A_WEIGHT, 0},
    {K_SOURCE_FILE, A_SOURCE_FILE, 0}, {K_SOURCE_INDEX, A_SOURCE_INDEX, 0},
    {K_METADATA, A_METADATA, 0},
};

typedef struct {
    const unsigned char *valid;  /* validity bitmap, or NULL when the column has no nulls */
    const int32_t *off;          /* n + 1 offsets (strings and lists), else NULL */
    const unsigned char *data;   /* values (list columns: the child values) */
    Py_ssize_t nvalues;          /* values in data (bytes of a string column, bits of a bool list) */
} ArrowCol;

typedef struct {
    PyObject_HEAD
    Py_ssize_t n;
    ArrowCol col[A_COUNT];
    Py_buffer views[3 * A_COUNT];
    int nviews;
    PyObject *last[A_COUNT];     /* repeated strings: the last value read from the column */
    PyObject *constant[A_COUNT]; /* a scalar column holding one value in every row (None: all
                                  * null), read without touching its buffers; NULL otherwise */
    PyObject *template_;         /* g_template with the constant columns' values: a Record's dict
                                  * starts as a copy of it, so they are never set per read (a
                                  * random read of a 200,000-record store 5% faster, a read of a
                                  * row in cache 13%) */
} ArrowRowsObject;

static PyTypeObject ArrowRowsType;

static void arrow_rows_dealloc(PyObject *self_) {
    ArrowRowsObject *self = (ArrowRowsObject *)self_;
    for (int k = 0; k < self->nviews; k++) PyBuffer_Release(&self->views[k]);
    for (int k = 0; k < A_COUNT; k++) { Py_CLEAR(self->last[k]); Py_CLEAR(self->constant[k]); }
    Py_CLEAR(self->template_);
    Py_TYPE(self_)->tp_free(self_);
}

/* the buffer of `obj` (None: NULL, size 0); -1 with an exception on failure */
static int arrow_take_buffer(ArrowRowsObject *self, PyObject *obj, const unsigned char **ptr, Py_ssize_t *len) {
    *ptr = NULL; *len = 0;
    if (obj == Py_None) return 0;
    Py_buffer *v = &self->views[self->nviews];
    if (PyObject_GetBuffer(obj, v, PyBUF_SIMPLE) < 0) return -1;
    self->nviews++;
    *ptr = (const unsigned char *)v->buf; *len = v->len;
    return 0;
}

static PyObject *arrow_rows_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    Py_ssize_t n; PyObject *columns;
    if (kwds != NULL && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "ArrowRows(n, columns) takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "nO!", &n, &PyTuple_Type, &columns)) return NULL;
    if (n < 0 || PyTuple_GET_SIZE(columns) != A_COUNT) {
        PyErr_Format(PyExc_ValueError, "ArrowRows: n >= 0 and %d columns", A_COUNT);
        return NULL;
    }
    ArrowRowsObject *self = (ArrowRowsObject *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->n = n;
    for (int k = 0; k < A_COUNT; k++) {
        PyObject *triple = PyTuple_GET_ITEM(columns, k);
        char kind = g_arrow_kinds[k];
        if (kind == 'S') kind = 's';  /* a repeated string: read the same way */
        if (!PyTuple_Check(triple) || PyTuple_GET_SIZE(triple) != 3) {
            /* (None, None, None, value): a scalar column with `value` in every row */
            if (PyTuple_Check(triple) && PyTuple_GET_SIZE(triple) == 4 && k != A_N_ATOMS
                && (k < A_NUMBERS || PyTuple_GET_ITEM(triple, 3) == Py_None)) {  /* a list column: all null */
                self->constant[k] = Py_NewRef(PyTuple_GET_ITEM(triple, 3));
                continue;
            }
            PyErr_Format(PyExc_ValueError, "ArrowRows: column %d is not a (validity, offsets, data) triple", k);
            goto fail;
        }
        ArrowCol *c = &self->col[k];
        const unsigned char *valid, *off, *data; Py_ssize_t lvalid, loff, ldata;
        if (arrow_take_buffer(self, PyTuple_GET_ITEM(triple, 0), &valid, &lvalid) < 0
            || arrow_take_buffer(self, PyTuple_GET_ITEM(triple, 1), &off, &loff) < 0
            || arrow_take_buffer(self, PyTuple_GET_ITEM(triple, 2), &data, &ldata) < 0) goto fail;
        int has_offsets = kind == 's' || kind == 'B' || kind == 'F' || kind == 'Q' || kind == '?';
        Py_ssize_t width = kind == 'i' ? 4 : (kind == 'f' || kind == 'q') ? 8 : 0;
        if ((valid != NULL && lvalid < (n + 7) / 8)
            || (has_offsets && (off == NULL || loff < 4 * (n + 1) || ((uintptr_t)off & 3)))
            || (!has_offsets && off != NULL)
            || (width && ldata < width * n)) {  /* values are read with memcpy: any alignment */
            PyErr_Format(PyExc_ValueError, "ArrowRows: the buffers of column %d do not fit %zd rows", k, n);
            goto fail;
        }
        c->valid = valid;
        c->off = (const int32_t *)off;
        c->data = data;
        c->nvalues = kind == '?' ? ldata * 8 : (kind == 'F' || kind == 'Q') ? ldata / 8 : ldata;
    }
    if ((self->template_ = PyDict_Copy(g_template)) == NULL) goto fail;
    for (int j = 0; j < (int)(sizeof(g_arrow_fields) / sizeof(g_arrow_fields[0])); j++) {
        int k = g_arrow_fields[j].col;
        if (!g_arrow_fields[j].array && k != A_METADATA && self->constant[k] != NULL
            && PyDict_SetItem(self->template_, g_keys[g_arrow_fields[j].key], self->constant[k]) < 0) goto fail;
    }
    return (PyObject *)self;
fail:
    Py_DECREF(self);
    return NULL;
}

static inline int arrow_null(const ArrowCol *c, Py_ssize_t row) {
    return c->valid != NULL && !((c->valid[row >> 3] >> (row & 7)) & 1);
}

/* values [*start, *start + *len) of a string or list cell; 0 when null (len -1), -1 when the
 * offsets are out of bounds */
static inline int arrow_span(const ArrowCol *c, Py_ssize_t row, Py_ssize_t *start, Py_ssize_t *len) {
    if (arrow_null(c, row)) { *len = -1; return 0; }
    int32_t a = c->off[row], b = c->off[row + 1];
    if (a < 0 || b < a || b > c->nvalues) return -1;
    *start = a; *len = b - a;
    return 0;
}

/* the string at `row` as a new reference (None when null); NULL without an exception set
 * when it cannot be read here (the Python path then reads the row) */
static PyObject *arrow_string(ArrowRowsObject *self, int k, Py_ssize_t row, int repeated) {
    Py_ssize_t start, len;
    if (arrow_span(&self->col[k], row, &start, &len) < 0) return NULL;
    if (len < 0) Py_RETURN_NONE;
    const char *data = (const char *)self->col[k].data + start;
    if (repeated) return repeated_str(&self->last[k], data, len);
    PyObject *s = PyUnicode_DecodeUTF8(data, len, NULL);
    if (s == NULL) PyErr_Clear();
    return s;
}

static inline PyObject *arrow_f8(const ArrowCol *c, Py_ssize_t row) {
    if (arrow_null(c, row)) Py_RETURN_NONE;
    double v; memcpy(&v, c->data + 8 * row, 8);
    return PyFloat_FromDouble(v);
}

static inline PyObject *arrow_i8(const ArrowCol *c, Py_ssize_t row) {
    if (arrow_null(c, row)) Py_RETURN_NONE;
    int64_t v; memcpy(&v, c->data + 8 * row, 8);
    return PyLong_FromLongLong(v);
}

/* the Record at `row` (0 <= row < n); NotImplemented for a row the Python path must read */
static PyObject *arrow_record(ArrowRowsObject *self, Py_ssize_t row) {
    if (record_type == NULL || packed_json_type == NULL) return Py_NewRef(Py_NotImplemented);
    const ArrowCol *col = self->col;
    PyObject *scalars[A_COUNT] = {NULL};
    PyObject *arrays[A_COUNT] = {NULL};
    PyObject *dict = NULL, *base = NULL, *result = NULL;
    /* list cells: start and length (-1: null), and the length n_atoms implies */
    Py_ssize_t start[A_COUNT], len[A_COUNT];
    if (arrow_null(&col[A_N_ATOMS], row)) goto fallback;
    int32_t n32; memcpy(&n32, col[A_N_ATOMS].data + 4 * row, 4);
    if (n32 < 0) goto fallback;
    Py_ssize_t n = n32;
    Py_ssize_t want[A_COUNT] = {0};
    want[A_NUMBERS] = n; want[A_POSITIONS] = 3 * n; want[A_CELL] = 9; want[A_PBC] = 3;
    want[A_FORCES] = 3 * n; want[A_STRESS] = 6; want[A_MAGMOMS] = n; want[A_FIXED] = n; want[A_TAGS] = n;
    /* bytes of each array in the shared buffer, 8-byte fields first so every view is aligned */
    static const int order[] = {A_POSITIONS, A_CELL, A_FORCES, A_STRESS, A_MAGMOMS, A_TAGS, A_NUMBERS,
                                A_FIXED, A_PBC};
    Py_ssize_t total = 0;
    for (int j = 0; j < (int)(sizeof(order) / sizeof(order[0])); j++) {
        int k = order[j];
        if (self->constant[k] == Py_None) { len[k] = -1; continue; }  /* null in every row */
        if (arrow_span(&col[k], row, &start[k], &len[k]) < 0) goto fallback;
        if (len[k] < 0) continue;
        if (len[k] != want[k]) goto fallback;  /* the Python path raises the shape error */
        total += (k == A_FIXED || k == A_PBC) ? len[k] : 8 * len[k];
    }
    if (len[A_NUMBERS] < 0 || len[A_POSITIONS] < 0) goto fallback;  /* required: Python decides */
    /* ask for every value the row's offsets point at (list cells and strings, one run of cache
     * lines per column) before copying any: the misses of the columns then overlap instead of
     * coming one after another (a cold read of a store larger than the cache: 1.8x faster) */
    for (int j = 0; j < (int)(sizeof(order) / sizeof(order[0])); j++) {
        int k = order[j];
        if (len[k] <= 0) continue;
        char kind = g_arrow_kinds[k];
        if (kind == 'F' || kind == 'Q') prefetch_span(col[k].data + 8 * start[k], 8 * (uint64_t)len[k]);
        else if (kind == 'B') prefetch_span(col[k].data + start[k], (uint64_t)len[k]);
        else prefetch_span(col[k].data + (start[k] >> 3), (uint64_t)len[k] / 8 + 2);  /* bits */
    }
    for (int k = A_ID; k <= A_METADATA; k++) {
        Py_ssize_t ss, sl;
        if (self->constant[k] != NULL || col[k].off == NULL) continue;  /* not read from the file */
        if (arrow_span(&col[k], row, &ss, &sl) == 0 && sl > 0) prefetch_span(col[k].data + ss, (uint64_t)sl);
    }

    base = PyByteArray_FromStringAndSize(NULL, total);
    if (base == NULL) goto error;
    char *buf = PyByteArray_AS_STRING(base);
    Py_ssize_t pos = 0;
    for (int j = 0; j < (int)(sizeof(order) / sizeof(order[0])); j++) {
        int k = order[j];
        Py_ssize_t m = len[k];
        if (m < 0) continue;
        char *dst = buf + pos;
        char kind = g_arrow_kinds[k];
        PyArray_Descr *descr;
        if (kind == 'F' || kind == 'Q') {
            if (m) memcpy(dst, col[k].data + 8 * start[k], 8 * m);
            descr = kind == 'F' ? g_f8 : g_i8;
            pos += 8 * m;
        } else if (kind == 'B') {  /* uint8 atomic numbers, int64 in the Record */
            const unsigned char *src = col[k].data + start[k];
            int64_t *out = (int64_t *)dst;
            for (Py_ssize_t a = 0; a < m; a++) out[a] = src[a];
            descr = g_i8;
            pos += 8 * m;
        } else {  /* '?': bit-packed bools, one byte each in the Record */
            const unsigned char *bits = col[k].data;
            for (Py_ssize_t a = 0; a < m; a++) {
                Py_ssize_t b = start[k] + a;
                dst[a] = (bits[b >> 3] >> (b & 7)) & 1;
            }
            descr = g_bool;
            pos += m;
        }
        int two_d = k == A_POSITIONS || k == A_FORCES || k == A_CELL;
        arrays[k] = view(base, dst, descr, two_d ? 2 : 1, two_d ? m / 3 : m, 3);
        if (arrays[k] == NULL) goto error;
    }

    for (int k = A_ID; k <= A_SOURCE_INDEX; k++) {  /* the scalar columns before metadata */
        char kind = g_arrow_kinds[k];
        if (k == A_N_ATOMS) continue;
        if (self->constant[k] != NULL) continue;  /* already in the shard's template */
        if (kind == 's' || kind == 'S') scalars[k] = arrow_string(self, k, row, kind == 'S');
        else if (kind == 'f') scalars[k] = arrow_f8(&col[k], row);
        else scalars[k] = arrow_i8(&col[k], row);
        if (scalars[k] == NULL) goto check;
    }
    if (self->constant[A_METADATA] == Py_None) scalars[A_METADATA] = PyDict_New();  /* no row has metadata */
    else {
        Py_ssize_t ms, ml;
        if (self->constant[A_METADATA] != NULL) goto fallback;  /* never built so: let Python read it */
        if (arrow_span(&col[A_METADATA], row, &ms, &ml) < 0) goto fallback;
        if (ml <= 0) scalars[A_METADATA] = PyDict_New();  /* null or "": no metadata, {} */
        else scalars[A_METADATA] = new_packed(packed_json_type, (const char *)col[A_METADATA].data + ms, ml);
        if (scalars[A_METADATA] == NULL) goto error;
    }

    dict = PyDict_Copy(self->template_);
    if (dict == NULL) goto error;
    for (int j = 0; j < (int)(sizeof(g_arrow_fields) / sizeof(g_arrow_fields[0])); j++) {
        PyObject *v = g_arrow_fields[j].array ? arrays[g_arrow_fields[j].col] : scalars[g_arrow_fields[j].col];
        if (v == NULL) continue;  /* a null list, or a constant column: the template's value */
        if (PyDict_SetItem(dict, g_keys[g_arrow_fields[j].key], v) < 0) goto error;
    }
    result = record_with_dict(dict);
    goto done;
check:  /* a reader gave NULL: an error to raise, or a value for the Python path */
    if (PyErr_Occurred()) goto error;
fallback:
    result = Py_NewRef(Py_NotImplemented);
    goto done;
error:
    Py_CLEAR(result);
done:
    for (int k = 0; k < A_COUNT; k++) { Py_XDECREF(scalars[k]); Py_XDECREF(arrays[k]); }
    Py_XDECREF(dict);
    Py_XDECREF(base);
    return result;
}

/* arrow_row(rows, row) -> Record | NotImplemented */
static PyObject *arrow_row(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (rows_and_row(args, nargs, &ArrowRowsType, "arrow_row(ArrowRows, row)") < 0) return NULL;
    return table_row_at(args[0], args[1]);
}

/* arrow_rows(rows, [row, ...]) -> [arrow_row(rows, row) for row in ...] */
static PyObject *arrow_rows_many(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (rows_and_row(args, nargs, &ArrowRowsType, "arrow_rows(ArrowRows, rows)") < 0) return NULL;
    ArrowRowsObject *rows = (ArrowRowsObject *)args[0];
    PyObject *seq = PySequence_Fast(args[1], "arrow_rows: rows must be a sequence");
    if (seq == NULL) return NULL;
    Py_ssize_t m = PySequence_Fast_GET_SIZE(seq);
    PyObject *out = PyList_New(m);
    if (out == NULL) { Py_DECREF(seq); return NULL; }
    for (Py_ssize_t j = 0; j < m; j++) {
        PyObject *record = table_row_at((PyObject *)rows, PySequence_Fast_GET_ITEM(seq, j));
        if (record == NULL) goto fail;
        PyList_SET_ITEM(out, j, record);
    }
    Py_DECREF(seq);
    return out;
fail:
    Py_DECREF(seq);
    Py_DECREF(out);
    return NULL;
}

static PyTypeObject ArrowRowsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "omni_data.store._fastcodec.ArrowRows",
    .tp_basicsize = sizeof(ArrowRowsObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "ArrowRows(n, columns): the column buffers of an Arrow shard, for arrow_row().",
    .tp_dealloc = arrow_rows_dealloc,
    .tp_new = arrow_rows_new,
};

/* rows of an ArrowRows or an LmdbRows, or -1 for anything else (a transaction's get) */
static Py_ssize_t table_rows(PyObject *fast) {
    if (Py_TYPE(fast) == &ArrowRowsType) return ((ArrowRowsObject *)fast)->n;
    if (Py_TYPE(fast) == &LmdbRowsType) return ((LmdbRowsObject *)fast)->n;
    return -1;
}

/* row `row` (0 <= row < table_rows(fast)) of an ArrowRows or an LmdbRows */
static PyObject *table_record(PyObject *fast, Py_ssize_t row) {
    return Py_TYPE(fast) == &LmdbRowsType ? lmdb_record((LmdbRowsObject *)fast, row)
                                          : arrow_record((ArrowRowsObject *)fast, row);
}

/* the Record at row_obj of an ArrowRows or an LmdbRows (lmdb_row, arrow_row, read_rows):
 * IndexError naming the reader when row_obj is not an int in range */
static PyObject *table_row_at(PyObject *fast, PyObject *row_obj) {
    Py_ssize_t row = row_index(row_obj, table_rows(fast), Py_TYPE(fast) == &LmdbRowsType ? "lmdb_row" : "arrow_row");
    return row < 0 ? NULL : table_record(fast, row);
}

/* ---- StoreIndex: Store.__getitem__ without a Python frame -------------------------------------
 *
 * A base type of ``reader.Store``. Its mp_subscript does what ``Store._getitem`` and
 * ``LmdbShard.record`` do for the common case: an int index, an LMDB shard already open in this
 * process with this thread's read transaction. Anything else (another index type, out of range,
 * a handle not yet open, a fork since, an Arrow shard, a value read_one() does not take) calls
 * ``store._getitem(key)``, the Python path, which gives the same record or raises the documented
 * error.
 *
 * Two levels. The cached one keeps, in C, the shards' cumulative row counts and, per shard, the
 * ``txn.get`` of one thread in this process: a read is a bisect over a C array, one get and one
 * decode. The cache belongs to one thread (another thread's read refills it for that thread) and
 * one process (a fork bumps g_fork_gen); ``Store`` empties it (``_fast_reset()``) whenever its
 * catalog or handles change. Without a cache entry, the looked-up level finds the same things
 * through the store's and the shard's attributes (about 0.2 us more per read) and fills the
 * entry. */

typedef struct {
    PyObject_HEAD
    Py_ssize_t nshards;      /* entries of ends and gets; 0: nothing cached */
    long long n;             /* records in the store */
    long long *ends;         /* cumulative record count of shards 0..k */
    PyObject **gets;         /* shard k's txn.get for `thread` (a new reference), or NULL */
    unsigned long thread;    /* PyThread_get_thread_ident() of the thread the gets belong to */
    unsigned long fork_gen;  /* g_fork_gen when the entries were taken */
} StoreIndexObject;

static unsigned long g_fork_gen;  /* bumped in a forked child (pthread_atfork) */
static void after_fork_child(void) { g_fork_gen++; }

static PyObject *g_store_fork, *g_lmdb_fork, *g_shard_type, *g_arrow_shard_type;
static PyObject *s_fast, *s_n, *s_shard_n, *s_ends, *s_rows, *s_fork, *s_local, *s_state, *s_env, *s_getitem;

static void cache_clear(StoreIndexObject *self) {
    for (Py_ssize_t k = 0; k < self->nshards; k++) Py_CLEAR(self->gets[k]);
    PyMem_Free(self->gets); PyMem_Free(self->ends);
    self->gets = NULL; self->ends = NULL; self->nshards = 0; self->n = 0;
}

/* remember `get` as shard k's for this thread; `ends` is the store's _ends_list. Never fails
 * the read: without memory the cache simply stays empty. */
static void cache_put(StoreIndexObject *self, PyObject *ends, long long n, Py_ssize_t k, PyObject *get) {
    unsigned long thread = PyThread_get_thread_ident();
    Py_ssize_t m = PyList_GET_SIZE(ends);
    if (self->nshards != m || self->thread != thread || self->fork_gen != g_fork_gen || self->n != n) {
        cache_clear(self);
        if (m == 0) return;
        self->ends = PyMem_Malloc(m * sizeof(long long));
        self->gets = PyMem_Calloc(m, sizeof(PyObject *));
        if (self->ends == NULL || self->gets == NULL) { cache_clear(self); return; }
        for (Py_ssize_t j = 0; j < m; j++) {
            self->ends[j] = PyLong_AsLongLong(PyList_GET_ITEM(ends, j));
            if (self->ends[j] == -1 && PyErr_Occurred()) { PyErr_Clear(); cache_clear(self); return; }
        }
        self->nshards = m; self->n = n; self->thread = thread; self->fork_gen = g_fork_gen;
    }
    Py_INCREF(get);
    Py_XSETREF(self->gets[k], get);
}

static PyObject *slow_getitem(PyObject *self, PyObject *key) {
    return PyObject_CallMethodOneArg(self, s_getitem, key);
}

static int same_int(PyObject *a, PyObject *b) {  /* two ints of the fork counters */
    if (a == b) return 1;
    if (a == NULL || b == NULL || !PyLong_CheckExact(a) || !PyLong_CheckExact(b)) return 0;
    return PyObject_RichCompareBool(a, b, Py_EQ) == 1;
}

/* the looked-up level: the store's and the shard's attributes, then the cache entry */
static PyObject *looked_up(PyObject *self, PyObject *key, long long i) {
    PyObject *dict = PyObject_GenericGetDict(self, NULL);
    if (dict == NULL) { PyErr_Clear(); return slow_getitem(self, key); }
    PyObject *result = NULL, *shard_dict = NULL, *state = NULL;
    PyObject *n_obj = PyDict_GetItemWithError(dict, s_n);
    PyObject *ends = PyDict_GetItemWithError(dict, s_ends);
    PyObject *rows = PyDict_GetItemWithError(dict, s_rows);
    PyObject *fork = PyDict_GetItemWithError(dict, s_fork);
    if (!n_obj || !ends || !rows || !fork || !PyList_CheckExact(ends)
        || !PyList_CheckExact(rows) || !same_int(fork, PyList_GET_ITEM(g_store_fork, 0))) goto slow;
    long long n = PyLong_AsLongLong(n_obj);
    if (n == -1 && PyErr_Occurred()) goto slow;
    if (i < 0) i += n;
    if (i < 0 || i >= n) goto slow;  /* the Python path raises the IndexError */
    /* bisect_right(ends, i): the first shard whose end is past i */
    Py_ssize_t lo = 0, hi = PyList_GET_SIZE(ends);
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        long long end = PyLong_AsLongLong(PyList_GET_ITEM(ends, mid));
        if (end == -1 && PyErr_Occurred()) goto slow;
        if (i < end) hi = mid; else lo = mid + 1;
    }
    if (lo >= PyList_GET_SIZE(rows)) goto slow;
    PyObject *handle = PyList_GET_ITEM(rows, lo);
    int arrow = g_arrow_shard_type != NULL && Py_TYPE(handle) == (PyTypeObject *)g_arrow_shard_type;
    if (handle == Py_None || (!arrow && Py_TYPE(handle) != (PyTypeObject *)g_shard_type)) goto slow;
    long long row = i - (lo ? PyLong_AsLongLong(PyList_GET_ITEM(ends, lo - 1)) : 0);  /* the shard's first index */
    if (PyErr_Occurred()) goto slow;
    shard_dict = PyObject_GenericGetDict(handle, NULL);
    if (shard_dict == NULL) goto slow;
    /* an Arrow shard's ArrowRows, or an LMDB shard's row table: no transaction, the mapping is
     * the process's */
    PyObject *fast = PyDict_GetItemWithError(shard_dict, s_fast);
    if (fast != NULL && table_rows(fast) >= 0) {
        if (row < 0 || row >= table_rows(fast)) goto slow;
        Py_INCREF(fast); Py_INCREF(ends); Py_INCREF(rows);  /* held: the reads allocate, a collection may run */
        result = table_record(fast, (Py_ssize_t)row);
        if (result == Py_NotImplemented) Py_CLEAR(result);
        else if (result != NULL && PyDict_GetItemWithError(dict, s_ends) == ends
                 && PyDict_GetItemWithError(dict, s_rows) == rows)
            cache_put((StoreIndexObject *)self, ends, n, lo, fast);
        Py_DECREF(fast); Py_DECREF(ends); Py_DECREF(rows);
        if (result == NULL && PyErr_Occurred()) goto done;
        if (result == NULL) goto slow;
        PyErr_Clear();
        goto done;
    }
    if (arrow) goto slow;  /* an Arrow shard the C reader does not cover: the Python path */
    PyObject *shard_n = PyDict_GetItemWithError(shard_dict, s_shard_n);
    PyObject *env = PyDict_GetItemWithError(shard_dict, s_env);
    PyObject *local = PyDict_GetItemWithError(shard_dict, s_local);
    if (!shard_n || !env || env == Py_None || !local) goto slow;
    long long shard_rows = PyLong_AsLongLong(shard_n);
    if ((shard_rows == -1 && PyErr_Occurred()) || row < 0 || row >= shard_rows) goto slow;
    state = PyObject_GetAttr(local, s_state);  /* this thread's (txn, fork, get) */
    if (state == NULL || !PyTuple_CheckExact(state) || PyTuple_GET_SIZE(state) != 3
        || !same_int(PyTuple_GET_ITEM(state, 1), PyList_GET_ITEM(g_lmdb_fork, 0))) goto slow;
    PyObject *get = PyTuple_GET_ITEM(state, 2);
    /* the get may let another thread run (refresh(), close()): hold what is compared after it */
    Py_INCREF(ends); Py_INCREF(rows); Py_INCREF(handle);
    result = read_one_ll(get, (unsigned long long)row);
    if (result != NULL && (result == Py_None || result == Py_NotImplemented)) Py_CLEAR(result);
    else if (result != NULL) {
        /* remember the get only if the store still has this catalog and handle */
        int current = PyDict_GetItemWithError(dict, s_ends) == ends && PyDict_GetItemWithError(dict, s_rows) == rows
                      && lo < PyList_GET_SIZE(rows) && PyList_GET_ITEM(rows, lo) == handle;
        if (current && !PyErr_Occurred()) cache_put((StoreIndexObject *)self, ends, n, lo, get);
        PyErr_Clear();
    }
    Py_DECREF(ends); Py_DECREF(rows); Py_DECREF(handle);
    if (result == NULL && PyErr_Occurred()) goto done;  /* an error from the lookup itself: raise it */
    if (result == NULL) goto slow;  /* absent or not version 2: the Python path */
    goto done;
slow:
    PyErr_Clear();
    result = slow_getitem(self, key);
done:
    Py_XDECREF(state);
    Py_XDECREF(shard_dict);
    Py_DECREF(dict);
    return result;
}

static PyObject *store_subscript(PyObject *self_, PyObject *key) {
    StoreIndexObject *self = (StoreIndexObject *)self_;
    if (g_shard_type == NULL || !PyLong_CheckExact(key)) return slow_getitem(self_, key);
    int overflow = 0;
    long long i = PyLong_AsLongLongAndOverflow(key, &overflow);
    if (overflow || (i == -1 && PyErr_Occurred())) { PyErr_Clear(); return slow_getitem(self_, key); }
    if (self->nshards && self->fork_gen == g_fork_gen && self->thread == PyThread_get_thread_ident()) {
        long long j = i < 0 ? i + self->n : i;
        if (j >= 0 && j < self->n) {
            Py_ssize_t lo = 0, hi = self->nshards;
            while (lo < hi) {
                Py_ssize_t mid = (lo + hi) / 2;
                if (j < self->ends[mid]) hi = mid; else lo = mid + 1;
            }
            PyObject *get = self->gets[lo];
            if (get != NULL) {
                Py_INCREF(get);  /* held across the call: a reset from another frame must not free it */
                long long row = j - (lo ? self->ends[lo - 1] : 0);
                PyObject *result;
                Py_ssize_t m = table_rows(get);  /* an Arrow shard's columns, an LMDB row table */
                if (m >= 0)
                    result = row < m ? table_record(get, (Py_ssize_t)row) : Py_NewRef(Py_NotImplemented);
                else
                    result = read_one_ll(get, (unsigned long long)row);
                Py_DECREF(get);
                if (result != NULL && result != Py_None && result != Py_NotImplemented) return result;
                Py_XDECREF(result);
                /* an error (e.g. the shard closed under us): forget the cache, take the long way,
                 * which reopens the shard or raises the error itself; never swallow an interrupt */
                if (result == NULL) {
                    if (!PyErr_ExceptionMatches(PyExc_Exception)) return NULL;
                    PyErr_Clear();
                    cache_clear(self);
                }
            }
        }
    }
    return looked_up(self_, key, i);
}

static PyObject *store_fast_reset(PyObject *self, PyObject *unused) {
    cache_clear((StoreIndexObject *)self);
    Py_RETURN_NONE;
}

static void store_dealloc(PyObject *self) {
    cache_clear((StoreIndexObject *)self);
    Py_TYPE(self)->tp_free(self);
}

static PyMethodDef store_methods[] = {
    {"_fast_reset", store_fast_reset, METH_NOARGS,
     "Forget the cached shard ends and read transactions (Store calls it when its catalog or "
     "handles change)."},
    {NULL, NULL, 0, NULL}
};

static PyMappingMethods store_mapping = {NULL, store_subscript, NULL};

static PyTypeObject StoreIndexType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "omni_data.store._fastcodec.StoreIndex",
    .tp_basicsize = sizeof(StoreIndexObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Base of reader.Store: store[i] for an int i in C (see _fastcodec.c).",
    .tp_as_mapping = &store_mapping,
    .tp_methods = store_methods,
    .tp_dealloc = store_dealloc,
    .tp_new = PyType_GenericNew,
};

/* configure_store(store_fork, lmdb_fork, LmdbShard): the fork counters of reader.py and lmdb.py
 * (one-element lists) and the shard type whose handles the fast path reads. */
static PyObject *configure_store(PyObject *self, PyObject *args) {
    PyObject *a, *b, *t, *arrow_t = NULL;
    if (!PyArg_ParseTuple(args, "O!O!O!|O!", &PyList_Type, &a, &PyList_Type, &b, &PyType_Type, &t,
                          &PyType_Type, &arrow_t)) return NULL;
    if (PyList_GET_SIZE(a) != 1 || PyList_GET_SIZE(b) != 1) {
        PyErr_SetString(PyExc_ValueError, "configure_store: fork counters are one-element lists");
        return NULL;
    }
    Py_INCREF(a); Py_INCREF(b); Py_INCREF(t);
    Py_XSETREF(g_store_fork, a); Py_XSETREF(g_lmdb_fork, b); Py_XSETREF(g_shard_type, t);
    Py_XINCREF(arrow_t); Py_XSETREF(g_arrow_shard_type, arrow_t);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"read_row", (PyCFunction)(void (*)(void))read_row, METH_FASTCALL,
     "read_row(get, row) -> Record | None | NotImplemented: get(row key), decoded."},
    {"configure_store", configure_store, METH_VARARGS,
     "configure_store(reader._FORK, lmdb._FORK, LmdbShard): what StoreIndex's fast path checks."},
    {"read_rows", (PyCFunction)(void (*)(void))read_rows, METH_FASTCALL,
     "read_rows(get, rows) -> list of what read_row gives for each row."},
    {"configure", configure, METH_VARARGS,
     "configure(Record, PackedMetadata): the type decode_v2 builds, and the marker of packed metadata."},
    {"arrow_row", (PyCFunction)(void (*)(void))arrow_row, METH_FASTCALL,
     "arrow_row(ArrowRows, row) -> Record, or NotImplemented for a row the Python path must read."},
    {"arrow_rows", (PyCFunction)(void (*)(void))arrow_rows_many, METH_FASTCALL,
     "arrow_rows(ArrowRows, rows) -> list of what arrow_row gives for each row."},
    {"address", address, METH_O, "address(buffer) -> the address of its first byte."},
    {"lmdb_row", (PyCFunction)(void (*)(void))lmdb_row, METH_FASTCALL,
     "lmdb_row(LmdbRows, row) -> Record, or NotImplemented for a row to read through LMDB."},
    {"decode_v2", decode_v2, METH_O,
     "decode_v2(value) -> Record, or NotImplemented when the value is not a well-formed version-2 "
     "record (the caller then decodes it in Python)."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastcodec", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fastcodec(void) {
    import_array();
    g_f8 = PyArray_DescrFromType(NPY_FLOAT64);
    g_i8 = PyArray_DescrFromType(NPY_INT64);
    g_bool = PyArray_DescrFromType(NPY_BOOL);
    for (int k = 0; k < K_COUNT; k++) {
        g_keys[k] = PyUnicode_InternFromString(g_key_names[k]);
        if (g_keys[k] == NULL) return NULL;
    }
    if ((g_dunder_dict = PyUnicode_InternFromString("__dict__")) == NULL) return NULL;
    g_template = PyDict_New();
    if (g_template == NULL) return NULL;
    for (int k = 0; k < K_COUNT; k++)
        if (PyDict_SetItem(g_template, g_keys[k], Py_None) < 0) return NULL;
    const char *names[] = {"_fast", "_n", "n", "_ends_list", "_rows", "_fork", "_local", "state", "_env",
                           "_getitem"};
    PyObject **slots[] = {&s_fast, &s_n, &s_shard_n, &s_ends, &s_rows, &s_fork, &s_local, &s_state, &s_env,
                          &s_getitem};
    for (int k = 0; k < (int)(sizeof(names) / sizeof(names[0])); k++)
        if ((*slots[k] = PyUnicode_InternFromString(names[k])) == NULL) return NULL;
#ifndef _WIN32
    if (pthread_atfork(NULL, NULL, after_fork_child) != 0) {
        PyErr_SetString(PyExc_OSError, "_fastcodec: pthread_atfork failed");
        return NULL;
    }
#endif
    if (PyType_Ready(&StoreIndexType) < 0 || PyType_Ready(&ArrowRowsType) < 0 || PyType_Ready(&LmdbRowsType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&StoreIndexType);
    if (PyModule_AddObject(m, "StoreIndex", (PyObject *)&StoreIndexType) < 0) {
        Py_DECREF(&StoreIndexType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&ArrowRowsType);
    if (PyModule_AddObject(m, "ArrowRows", (PyObject *)&ArrowRowsType) < 0) {
        Py_DECREF(&ArrowRowsType);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&LmdbRowsType);
    if (PyModule_AddObject(m, "LmdbRows", (PyObject *)&LmdbRowsType) < 0) {
        Py_DECREF(&LmdbRowsType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
