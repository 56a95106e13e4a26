"""The corpus recipe in pipelines/: corpus.yaml validates, every batch script parses (bash -n), and
the scripts, run with stand-in ``sbatch``/``omni-data``/``srun``/``scontrol`` on PATH, issue the
commands and dependency chain the README describes (the dask-jobqueue way: test rendered text)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PIPE = REPO / "pipelines"
SCRIPTS = ["ingest.sbatch", "describe_select.sbatch", "collect.sbatch", "train.sbatch"]
DATASETS = [
    "mptrj",
    "salex",
    "omat24",
    "matpes_pbe",
    "matpes_r2scan",
    "mp_aloe",
    "mp_r2scan",
    "oc20",
    "oc22",
    "odac23",
    "omol25",
    "spice",
    "qcml",
    "mad",
    "bridge",
]


def _load_corpus_module():
    """pipelines/corpus.py is a script, not a package module: load it from its path."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("omni_pipelines_corpus", PIPE / "corpus.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


corpus_mod = _load_corpus_module()


def _stub(bindir: Path, name: str, body: str) -> None:
    path = bindir / name
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def fake_env(tmp_path: Path) -> dict[str, str]:
    """PATH with stand-ins that log their argv to $CALLS; sbatch answers job ids 101, 102, ..."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    calls = tmp_path / "calls.log"
    log = 'printf "%s" "$(basename "$0")" >> "$CALLS"; for a in "$@"; do printf " [%s]" "$a" >> "$CALLS"; done; echo >> "$CALLS"\n'
    _stub(bindir, "sbatch", log + 'n=$(grep -c "^sbatch" "$CALLS"); echo "$((100 + n));cluster"\n')
    for name in ("omni-data", "srun", "omni-train"):
        _stub(bindir, name, log)
    _stub(bindir, "scontrol", 'printf "node001\\nnode002\\n"\n')
    env = dict(
        os.environ,
        PATH=f"{bindir}:{os.environ['PATH']}",
        CALLS=str(calls),
        OMNI_REPO=str(REPO),
        OMNI_WORK=str(tmp_path / "work"),
        OMNI_DATA_ROOT=str(tmp_path / "data"),
    )
    env.pop("OMNI_CORPUS", None)
    return env


def _calls(env: dict[str, str]) -> list[str]:
    path = Path(env["CALLS"])
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.parametrize("script", SCRIPTS + ["../run_corpus.sh"])
def test_scripts_parse_with_bash_n(script: str) -> None:
    path = PIPE / "slurm" / script
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert path.read_text().startswith("#!")


@pytest.mark.parametrize("script", SCRIPTS)
def test_sbatch_headers(script: str) -> None:
    text = (PIPE / "slurm" / script).read_text()
    directives = [line for line in text.splitlines() if line.startswith("#SBATCH")]
    assert any("--job-name=omni-" in d for d in directives)
    assert any("--time=" in d for d in directives)
    first_command = next(i for i, line in enumerate(text.splitlines()) if line and not line.startswith("#"))
    last_directive = max(i for i, line in enumerate(text.splitlines()) if line.startswith("#SBATCH"))
    assert last_directive < first_command, "sbatch ignores #SBATCH lines after the first command"
    assert "set -euo pipefail" in text


def test_corpus_lists_the_15_datasets_and_the_curriculum() -> None:
    c = corpus_mod.load_corpus(PIPE / "config" / "corpus.yaml")
    assert [d.name for d in c.datasets] == DATASETS
    assert [d.name for d in c.ingest_datasets()] == DATASETS[:-1]
    stages = c.train["stages"]
    assert [set(s["datasets"]) for s in stages[:2]] == [
        {"mptrj", "salex", "omat24"},
        {"mptrj", "salex", "omat24", "omol25"},
    ]
    assert set(stages[-1]["datasets"]) == set(DATASETS)
    manifests = {p.stem for p in (REPO / "manifests").glob("*.yaml")}
    assert set(DATASETS) <= manifests, f"corpus names without a manifest: {set(DATASETS) - manifests}"
    for d in c.datasets:  # the tasks the corpus promises are the manifests' own
        m = yaml.safe_load((REPO / "manifests" / f"{d.name}.yaml").read_text())
        promised = {m["task"], *(r["task"] for r in m.get("task_rules") or [])}
        assert set(d.tasks) == promised, d.name


def test_corpus_rejects_unknown_keys(tmp_path: Path) -> None:
    data = yaml.safe_load((PIPE / "config" / "corpus.yaml").read_text())
    data["bridge"]["fractoin"] = 0.1
    bad = tmp_path / "corpus.yaml"
    bad.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match="fractoin"):
        corpus_mod.load_corpus(bad)


def test_stage_weights_sum_datasets_into_tasks() -> None:
    c = corpus_mod.load_corpus(PIPE / "config" / "corpus.yaml")
    w = {d.name: d.weight for d in c.datasets}
    first = corpus_mod.stage_configs(c)[0]
    assert first["tasks"] == ["mpa", "omat24"]
    assert first["weights"]["mpa"] == pytest.approx(w["mptrj"] + w["salex"])  # both are the mpa task
    second = corpus_mod.stage_configs(c)[1]
    assert second["weights"]["omol25_low"] == pytest.approx(w["omol25"] / 2)


def test_train_config_validates_against_omni_train(tmp_path: Path, fake_env: dict[str, str]) -> None:
    out = tmp_path / "train.yaml"
    subprocess.run(
        [sys.executable, str(PIPE / "corpus.py"), "train-config", "--out", str(out)], env=fake_env, check=True
    )
    cfg = yaml.safe_load(out.read_text())
    assert cfg["data"]["store"] == str(tmp_path / "work" / "store")
    assert [s["name"] for s in cfg["stages"]] == ["materials", "plus_molecules", "all"]
    assert cfg["loss"]["task_l2"] > 0
    config = pytest.importorskip("omni_model.config")
    config.config_from_dict(cfg, str(out))


def test_ingest_array_element_runs_one_dataset(fake_env: dict[str, str]) -> None:
    env = dict(fake_env, SLURM_ARRAY_TASK_ID="2", OMNI_PARTITION="cpu", OMNI_ACCOUNT="proj1")
    subprocess.run(["bash", str(PIPE / "slurm" / "ingest.sbatch")], env=env, check=True, capture_output=True)
    calls = _calls(env)
    work, data = env["OMNI_WORK"], env["OMNI_DATA_ROOT"]
    assert calls[0].startswith(f"omni-data [ingest] [omat24] [--source] [{data}/omat24] [--out] [{work}/store]")
    for flag in ("[--slurm]", "[--jobs] [8]", "[--cores] [32]", "[--queue] [cpu]", "[--account] [proj1]"):
        assert flag in calls[0]
    assert calls[1] == f"omni-data [verify] [{work}/store]"


def test_ingest_outside_an_array_fails_clearly(fake_env: dict[str, str]) -> None:
    env = {k: v for k, v in fake_env.items() if k != "SLURM_ARRAY_TASK_ID"}
    result = subprocess.run(["bash", str(PIPE / "slurm" / "ingest.sbatch")], env=env, capture_output=True, text=True)
    assert result.returncode != 0 and "array job" in result.stderr
    assert _calls(env) == []


def test_describe_select_emits_jobs_then_chains_the_rest(fake_env: dict[str, str]) -> None:
    work = Path(fake_env["OMNI_WORK"])
    jobs = work / "bridge" / "jobs"
    for i in range(3):  # what emit-jobs would have written
        (jobs / f"j{i}").mkdir(parents=True)
        (jobs / f"j{i}" / "job.json").write_text("{}")
    env = dict(fake_env, SLURM_CPUS_PER_TASK="4", OMNI_VASP_CMD="srun vasp_std", OMNI_PARTITION="cpu")
    subprocess.run(["bash", str(PIPE / "slurm" / "describe_select.sbatch")], env=env, check=True, capture_output=True)
    calls = _calls(env)
    omni = [c for c in calls if c.startswith("omni-data")]
    assert omni[0] == f"omni-data [describe] [{work}/store] [--kind] [rdf] [--workers] [4]"
    assert omni[1].startswith(f"omni-data [select-bridge] [{work}/store] [--fraction] [0.001] [--min-per-task] [1000]")
    assert omni[2] == (
        f"omni-data [emit-jobs] [{work}/bridge/selection/selection.parquet] [--protocol] "
        f"[mp-pbe-static] [--out] [{jobs}]"
    )
    assert omni[3] == f"omni-data [jobs] [{jobs}]"
    sb = [c for c in calls if c.startswith("sbatch")]
    assert len(sb) == 3  # vasp array, collect, train
    # the VASP array is the recompute part's template, sized by its helper: 3 dirs, 50 per task
    assert "[--array=0-0%200]" in sb[0] and "[--partition=cpu]" in sb[0]
    assert sb[0].endswith(f"[{PIPE}/slurm/vasp_array.sbatch]")
    assert "[--dependency=afterany:101]" in sb[1] and sb[1].endswith("collect.sbatch]")
    assert "[--dependency=afterok:102]" in sb[2] and sb[2].endswith("train.sbatch]")


def test_vasp_array_waits_for_the_given_job(fake_env: dict[str, str]) -> None:
    jobs = Path(fake_env["OMNI_WORK"]) / "bridge" / "jobs"
    for i in range(120):  # 120 dirs, 50 per array task -> 3 tasks
        (jobs / f"j{i:03d}").mkdir(parents=True)
        (jobs / f"j{i:03d}" / "job.json").write_text("{}")
    env = dict(fake_env, OMNI_VASP_CMD="srun vasp_std")
    subprocess.run(
        ["bash", str(PIPE / "run_corpus.sh"), "--from", "vasp", "--to", "collect", "--after", "77"],
        env=env,
        check=True,
        capture_output=True,
    )
    sb = _calls(env)
    assert len(sb) == 2
    assert "[--array=0-2%200]" in sb[0] and "[--dependency=afterok:77]" in sb[0]
    assert "[--dependency=afterany:101]" in sb[1] and sb[1].endswith("collect.sbatch]")


def test_submit_helper_collect_waits_for_the_array_not_the_arrays_dependency(fake_env: dict[str, str]) -> None:
    """Stand-in sbatch. The extra --dependency is the array's; passed on to the collect job it
    overrode afterany:ARRAY (last option wins), so collect ran before the array had finished:
    found on the real Slurm (test_real_slurm.py)."""
    jobs = Path(fake_env["OMNI_WORK"]) / "jobs"
    for i in range(3):
        (jobs / f"j{i}").mkdir(parents=True)
        (jobs / f"j{i}" / "job.json").write_text("{}")
    env = dict(fake_env, OMNI_COLLECT_STORE=str(Path(fake_env["OMNI_WORK"]) / "store"))
    subprocess.run(
        [
            "bash",
            str(PIPE / "slurm" / "submit_vasp_jobs.sh"),
            str(jobs),
            "false",
            "1",
            "--",
            "--dependency=afterok:77",
            "--partition=cpu",
            "-d",
            "afterok:78",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    array, collect = _calls(env)
    assert "[--dependency=afterok:77]" in array and "[afterok:78]" in array
    assert "[--dependency=afterany:101]" in collect and "[--partition=cpu]" in collect
    assert "afterok" not in collect and "[-d]" not in collect


def test_vasp_stage_needs_emitted_jobs(fake_env: dict[str, str]) -> None:
    env = dict(fake_env, OMNI_VASP_CMD="srun vasp_std")
    result = subprocess.run(
        ["bash", str(PIPE / "run_corpus.sh"), "--from", "vasp"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 1 and "no job directories" in result.stderr
    assert _calls(env) == []


def test_run_corpus_chains_ingest_then_select(fake_env: dict[str, str]) -> None:
    result = subprocess.run(
        ["bash", str(PIPE / "run_corpus.sh")], env=fake_env, capture_output=True, text=True, check=True
    )
    sb = _calls(fake_env)
    assert len(sb) == 2
    assert "[--array=0-13%3]" in sb[0] and sb[0].endswith("ingest.sbatch]")
    assert "[--dependency=afterok:101]" in sb[1] and sb[1].endswith("describe_select.sbatch]")
    assert "[--export=ALL,OMNI_TO=train,OMNI_NO_CHAIN=0]" in sb[1]
    assert "ingest: job 101" in result.stdout


def test_describe_select_keeps_the_callers_last_stage(fake_env: dict[str, str]) -> None:
    jobs = Path(fake_env["OMNI_WORK"]) / "bridge" / "jobs" / "j0"
    jobs.mkdir(parents=True)
    (jobs / "job.json").write_text("{}")
    env = dict(fake_env, OMNI_VASP_CMD="srun vasp_std", OMNI_TO="collect")
    subprocess.run(["bash", str(PIPE / "slurm" / "describe_select.sbatch")], env=env, check=True, capture_output=True)
    sb = [c for c in _calls(env) if c.startswith("sbatch")]
    assert len(sb) == 2 and sb[1].endswith("collect.sbatch]")  # no train job


def test_run_corpus_rejects_unknown_stage(fake_env: dict[str, str]) -> None:
    result = subprocess.run(
        ["bash", str(PIPE / "run_corpus.sh"), "--from", "bogus"], env=fake_env, capture_output=True, text=True
    )
    assert result.returncode == 2 and "unknown stage 'bogus'" in result.stderr
    assert _calls(fake_env) == []


def test_collect_then_whole_corpus_steps(fake_env: dict[str, str]) -> None:
    subprocess.run(["bash", str(PIPE / "slurm" / "collect.sbatch")], env=fake_env, check=True, capture_output=True)
    work = fake_env["OMNI_WORK"]
    verbs = [c.split()[1] for c in _calls(fake_env)]
    assert verbs == ["[jobs]", "[collect-bridge]", "[references]", "[split]", "[verify]", "[report]"]
    assert f"[collect-bridge] [{work}/bridge/jobs] [--out] [{work}/store] [--task] [bridge]" in _calls(fake_env)[1]


def test_train_launches_one_torchrun_per_node(fake_env: dict[str, str]) -> None:
    env = dict(
        fake_env,
        SLURM_NNODES="2",
        SLURM_GPUS_PER_NODE="h100:4",
        SLURM_JOB_ID="555",
        SLURM_JOB_NODELIST="node[001-002]",
        SLURM_CPUS_PER_TASK="32",
    )
    subprocess.run(["bash", str(PIPE / "slurm" / "train.sbatch")], env=env, check=True, capture_output=True)
    (call,) = _calls(env)
    config = f"{env['OMNI_WORK']}/train/train.yaml"
    assert call.startswith(
        "srun [--kill-on-bad-exit=1] [--ntasks-per-node=1] [torchrun] [--nnodes=2] [--nproc-per-node=4]"
    )
    assert "[--rdzv-endpoint=node001:29500]" in call and "[--rdzv-id=555]" in call
    assert call.endswith(f"[--no-python] [omni-train] [{config}]")
    assert yaml.safe_load(Path(config).read_text())["run"]["out_dir"] == f"{env['OMNI_WORK']}/train"


def test_train_without_gpus_fails_clearly_or_runs_cpu_processes(fake_env: dict[str, str]) -> None:
    """sbatch --gpus-per-node=0 sets SLURM_GPUS_PER_NODE=0: before, bash divided by zero and
    torchrun died on --nproc-per-node=0 (seen on the real Slurm). Now: a clear error, or
    OMNI_PROCS_PER_NODE CPU processes (what test_real_slurm.py runs)."""
    env = dict(
        fake_env,
        SLURM_NNODES="1",
        SLURM_GPUS_PER_NODE="0",
        SLURM_JOB_ID="7",
        SLURM_JOB_NODELIST="vm",
        SLURM_CPUS_PER_TASK="2",
    )
    done = subprocess.run(["bash", str(PIPE / "slurm" / "train.sbatch")], env=env, capture_output=True, text=True)
    assert done.returncode == 2 and "set OMNI_PROCS_PER_NODE" in done.stderr and _calls(env) == []
    env["OMNI_PROCS_PER_NODE"] = "2"
    subprocess.run(["bash", str(PIPE / "slurm" / "train.sbatch")], env=env, check=True, capture_output=True)
    (call,) = _calls(env)
    assert "[--nnodes=1] [--nproc-per-node=2]" in call
