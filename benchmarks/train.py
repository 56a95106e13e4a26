"""Omni vs SevenNet: training throughput and validation errors on identical EMT data, same size.

Both models get the same rattled Cu/Au/Pt bulk cells and fcc(111) slabs labelled with ASE's
EMT, the same architecture size (channels, lmax, layers, cutoff, radial MLP, Bessel basis,
polynomial cutoff, linear self-connection, average-neighbour normalisation), the same
elemental reference shift and force-RMS scale, the same optimiser (AdamW, constant lr, no
clipping), batch size and number of steps, and an MSE loss on energy/atom, forces and stress.
Graphs are built once before timing for both; both train on the same batches in the same order
(shuffled epochs), and the two codes' steps are interleaved so a changing load hits both alike.
Prints structures/s of each, the ratio, and the validation MAEs after the same number of steps.

    python benchmarks/train.py                       # default: 96 structures, 300 steps (~2 min on 2 cores)
    python benchmarks/train.py --n-train 1000 --steps 2000 --channels 64 --lmax 2 --layers 4

Needs the [bench] extra (sevenn, torch_geometric, matscipy, braceexpand, xxhash).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_data(n: int, seed: int):
    """Rattled, strained Cu/Au/Pt alloys: 2x2x2 fcc bulk (8-32 atoms) and 2x2x3 (111) slabs."""
    from ase.build import bulk, fcc111
    from ase.calculators.emt import EMT

    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        if k % 4 == 3:
            a = fcc111("Cu", size=(2, 2, 3), vacuum=5.0, a=3.7)
        else:
            a = bulk("Cu", "fcc", a=3.75, cubic=True).repeat((1 + k % 2, 1, 1))
        a.set_chemical_symbols(rng.choice(["Cu", "Au", "Pt"], size=len(a)))
        if a.pbc.all():
            a.set_cell(a.cell.array @ (np.eye(3) + 0.03 * rng.standard_normal((3, 3))), scale_atoms=True)
        a.rattle(0.1, seed=int(rng.integers(1 << 30)))
        a.calc = EMT()
        a.get_potential_energy()
        a.get_forces()
        if a.pbc.all():
            a.get_stress()
        out.append(a)
    return out


def write_store(path: Path, atoms_list, task: str = "emt") -> None:
    """The training structures as an Omni store (Omni reads the store directly)."""
    from omni_data.schema import Record
    from omni_data.store import write_shard

    recs = []
    for i, a in enumerate(atoms_list):
        recs.append(
            Record(
                numbers=a.numbers,
                positions=a.positions,
                id=f"emt:{i}",
                dataset="emt",
                task=task,
                cell=a.cell.array if a.pbc.any() else None,
                pbc=a.pbc,
                energy=a.get_potential_energy(),
                forces=a.get_forces(),
                stress=a.get_stress() if a.pbc.all() else None,
                source_file="bench",
                source_index=i,
            ).normalized()
        )
    write_shard(path, "part-0", recs)


def fit_refs(atoms_list, zs: list[int]) -> np.ndarray:
    a = np.array([[np.sum(x.numbers == z) for z in zs] for x in atoms_list], dtype=float)
    e = np.array([x.get_potential_energy() for x in atoms_list])
    return np.linalg.lstsq(a, e, rcond=None)[0]


def force_rms(atoms_list) -> float:
    return float(np.sqrt(np.mean(np.concatenate([x.get_forces().ravel() for x in atoms_list]) ** 2)))


# --------------------------------------------------------------------------------- Omni
def run_omni(args, train, valid, refs, scale, avg_neigh, tmp: Path) -> dict:
    import torch

    from omni_model.config import config_from_dict
    from omni_model.data.dataset import GraphDataset, store_columns
    from omni_model.train.trainer import Trainer
    from omni_model.train.validate import evaluate

    write_store(tmp / "train", train)
    write_store(tmp / "valid", valid)
    cfg = config_from_dict(
        {
            "model": {
                "channels": args.channels,
                "lmax": args.lmax,
                "num_layers": args.layers,
                "cutoff": args.cutoff,
                "parity": True,
                "halve_channels": False,
                "radial_hidden": [64, 64],
                "num_basis": 8,
                "elements": ["Cu", "Pt", "Au"],
                "avg_num_neighbors": avg_neigh,
                "train_shift_scale": False,
            },  # SevenNet default: fixed shift/scale
            "data": {"store": str(tmp / "train"), "batch_size": args.batch, "valid_fraction": 0.0},
            "loss": {"kind": "mse", "energy_weight": 1.0, "forces_weight": 1.0, "stress_weight": args.stress_weight},
            "optim": {"lr": args.lr, "scheduler": "none", "grad_clip": 0.0},
            "run": {
                "out_dir": str(tmp / "omni-run"),
                "progress": False,
                "seed": args.seed,
                "checkpoint_every": 0,
                "log_every": 10**9,
            },
            "stages": [{"name": "bench", "steps": args.steps}],
        }
    )
    tr = Trainer(cfg)
    with torch.no_grad():  # identical references and scale for both codes
        tr.model.shift_scale.set_reference(
            torch.tensor([list(refs)], dtype=torch.float32), torch.tensor([scale], dtype=torch.float32)
        )
    tr.prep.train.graphs(range(len(tr.prep.train)))  # build every neighbour list before timing
    n_params = sum(p.numel() for p in tr.model.parameters())

    def step(ks: list[int]) -> None:
        tr.train_step(tr.prep.train.graphs(ks))

    def errors() -> dict:
        from omni_data.store import Store

        vstore = Store(tmp / "valid")
        vds = GraphDataset(
            vstore,
            np.arange(len(vstore)),
            args.cutoff,
            tr.model.elements,
            tr.model.tasks,
            store_columns(vstore)["task"],
        )
        return evaluate(tr.model, vds, tr.model.tasks, 16)["emt"]

    return {"step": step, "errors": errors, "params": n_params}


# ----------------------------------------------------------------------------- SevenNet
def run_sevenn(args, train, valid, refs, scale, avg_neigh) -> dict:
    import torch
    from sevenn import _keys as KEY
    from sevenn._const import model_defaults
    from sevenn.atom_graph_data import AtomGraphData
    from sevenn.model_build import build_E3_equivariant_model
    from sevenn.train.dataload import atoms_to_graph
    from torch_geometric.data import Batch
    from torch_geometric.loader import DataLoader

    torch.manual_seed(args.seed)
    zs = [29, 78, 79]
    cfg = dict(model_defaults({}))
    cfg.update(
        {
            KEY.CUTOFF: args.cutoff,
            KEY.NODE_FEATURE_MULTIPLICITY: args.channels,
            KEY.LMAX: args.lmax,
            KEY.IS_PARITY: True,
            KEY.NUM_CONVOLUTION: args.layers,
            KEY.CONVOLUTION_WEIGHT_NN_HIDDEN_NEURONS: [64, 64],
            KEY.RADIAL_BASIS: {KEY.RADIAL_BASIS_NAME: "bessel", KEY.BESSEL_BASIS_NUM: 8},
            KEY.CUTOFF_FUNCTION: {KEY.CUTOFF_FUNCTION_NAME: "poly_cut", KEY.POLY_CUT_P: 6},
            KEY.SELF_CONNECTION_TYPE: "linear",
            KEY.CONV_DENOMINATOR: float(avg_neigh),
            KEY.NUM_SPECIES: len(zs),
            KEY.TYPE_MAP: {z: i for i, z in enumerate(zs)},
            KEY.CHEMICAL_SPECIES: ["Cu", "Pt", "Au"],
            KEY.SHIFT: [float(r) for r in refs],
            KEY.SCALE: float(scale),
            KEY.TRAIN_SHIFT_SCALE: False,
            KEY.USE_MODAL_WISE_SHIFT: False,
            KEY.USE_MODAL_WISE_SCALE: False,
        }
    )
    model = build_E3_equivariant_model(cfg)
    model.train()

    def graphs(atoms_list):
        return [
            AtomGraphData.from_numpy_dict(atoms_to_graph(a, args.cutoff, transfer_info=False, y_from_calc=True))
            for a in atoms_list
        ]

    gtrain, gvalid = graphs(train), graphs(valid)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    n_params = sum(p.numel() for p in model.parameters())

    def loss_of(out, batch):
        n = batch[KEY.NUM_ATOMS].to(out[KEY.PRED_TOTAL_ENERGY].dtype)
        le = ((out[KEY.PRED_TOTAL_ENERGY] - batch[KEY.ENERGY]) / n).square().mean()
        lf = (out[KEY.PRED_FORCE] - batch[KEY.FORCE]).square().mean()
        s, ps = batch[KEY.STRESS].reshape(-1, 6), out[KEY.PRED_STRESS].reshape(-1, 6)
        ok = torch.isfinite(s).all(dim=1)
        ls = (ps[ok] - s[ok]).square().mean() if ok.any() else le * 0
        return le + lf + args.stress_weight * ls

    def step(ks: list[int]) -> None:  # batching (what DataLoader's collate does) is timed too
        batch = Batch.from_data_list([gtrain[k] for k in ks])
        out = model(batch)
        loss = loss_of(out, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def errors() -> dict:
        model.eval()
        e_err, f_err, s_err = [], [], []
        for batch in DataLoader(gvalid, batch_size=16):
            out = model(batch)
            n = batch[KEY.NUM_ATOMS]
            e_err.append(((out[KEY.PRED_TOTAL_ENERGY] - batch[KEY.ENERGY]) / n).abs().detach().numpy())
            f_err.append((out[KEY.PRED_FORCE] - batch[KEY.FORCE]).abs().detach().numpy().ravel())
            s, ps = batch[KEY.STRESS].reshape(-1, 6), out[KEY.PRED_STRESS].reshape(-1, 6)
            ok = torch.isfinite(s).all(dim=1)
            s_err.append((ps[ok] - s[ok]).abs().detach().numpy().ravel())
        return {
            "energy_mae_per_atom": float(np.mean(np.concatenate(e_err))),
            "forces_mae": float(np.mean(np.concatenate(f_err))),
            "stress_mae": float(np.mean(np.concatenate(s_err))),
        }

    return {"step": step, "errors": errors, "params": n_params}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-train", type=int, default=96)
    p.add_argument("--n-valid", type=int, default=32)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--channels", type=int, default=32)
    p.add_argument("--lmax", type=int, default=2)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--cutoff", type=float, default=4.5)
    p.add_argument("--lr", type=float, default=0.005)
    p.add_argument("--stress-weight", type=float, default=0.01)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads for both")
    p.add_argument("--warmup", type=int, default=5, help="steps excluded from the timing")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    data = make_data(args.n_train + args.n_valid, args.seed)
    train, valid = data[: args.n_train], data[args.n_train :]
    zs = [29, 78, 79]
    refs, scale = fit_refs(train, zs), force_rms(train)
    from omni_model.data.graph import graph_from_atoms, species_table

    table = species_table(zs)
    avg = float(np.mean([len(graph_from_atoms(a, args.cutoff, table).src) / len(a) for a in train]))
    print(
        f"data: {len(train)} train / {len(valid)} valid EMT structures, avg {avg:.1f} neighbours, "
        f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, {args.threads} torch thread(s)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        res = {
            "sevenn": run_sevenn(args, train, valid, refs, scale, avg),
            "omni": run_omni(args, train, valid, refs, scale, avg, Path(tmp)),
        }
        # identical batches in identical order (shuffled epochs), and the two codes' steps
        # interleaved so both see the same machine load
        rng = np.random.default_rng(args.seed)
        order = np.concatenate([rng.permutation(len(train)) for _ in range(args.steps * args.batch // len(train) + 1)])
        times: dict[str, list[float]] = {k: [] for k in res}
        for i in range(args.steps):
            ks = order[i * args.batch : (i + 1) * args.batch].tolist()
            for name, r in res.items():
                t0 = time.perf_counter()
                r["step"](ks)
                times[name].append(time.perf_counter() - t0)
        for name, r in res.items():
            r.update(r["errors"](), times=times[name])
    print(f"{'code':<8}{'params':>9}{'structures/s':>14}{'E meV/atom':>12}{'F meV/Å':>10}{'S meV/Å³':>10}")
    for name, r in res.items():
        t = np.array(r["times"][args.warmup :])
        r["rate"] = args.batch * len(t) / t.sum()
        print(
            f"{name:<8}{r['params']:>9}{r['rate']:>14.1f}{1000 * r['energy_mae_per_atom']:>12.2f}"
            f"{1000 * r['forces_mae']:>10.1f}{1000 * r['stress_mae']:>10.2f}"
        )
    print(
        f"throughput ratio omni/sevenn: {res['omni']['rate'] / res['sevenn']['rate']:.2f}x "
        f"after {args.steps} steps of batch {args.batch}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
