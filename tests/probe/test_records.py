"""The results store: deterministic names, atomic round trips, tolerant of future minor fields,
strict about newer majors and broken files."""

from __future__ import annotations

import json
import threading

import pytest

from intdim.errors import UserError
from probe.records import (
    SCHEMA_VERSION,
    Record,
    has_record,
    read_records,
    record_path,
    run_id,
    software_versions,
    write_record,
)


def rec(**kw) -> Record:
    base = dict(
        checkpoint="checkpoint_20000",
        task="mrpc",
        method="said",
        d=1000,
        lr=1e-2,
        seed=0,
        status="ok",
        metric="accuracy",
        eval_value=0.81,
        train_value=0.9,
        eval_metrics={"accuracy": 0.81, "f1": 0.86},
        steps=1200,
        wall_seconds=33.5,
        stop_at=0.792,
        config={"search": {"k": 1}, "lr": 0.01},
        software=software_versions(),
    )
    base.update(kw)
    return Record(**base)


def test_round_trip(tmp_path):
    a = rec()
    b = rec(method="full", d=None, lr=2e-5, majority_baseline=0.68, stop_at=None)
    c = rec(d=2000, status="unstable", eval_value=None, train_value=float("nan"))
    for r in (a, b, c):
        write_record(tmp_path, r)
    back = read_records(tmp_path)
    assert sorted(back, key=lambda r: r.run_id) == sorted([a, b, c], key=lambda r: r.run_id)
    assert back[0].method == "full"  # sorted: full before subspace of the same task
    assert c.train_value is None  # NaN is stored as null: JSON has no NaN
    text = record_path(tmp_path, c.run_id).read_text()
    assert "NaN" not in text


def test_file_layout_and_fields(tmp_path):
    r = rec()
    path = write_record(tmp_path, r)
    assert path == tmp_path / "records" / f"{r.run_id}.json" and has_record(tmp_path, r.run_id)
    obj = json.loads(path.read_text())
    for field in ("schema_version", "checkpoint", "task", "method", "d", "lr", "seed", "metric",
                  "eval_value", "train_value", "steps", "wall_seconds", "status", "error",
                  "config", "software", "run_id"):  # fmt: skip
        assert field in obj
    assert obj["schema_version"] == SCHEMA_VERSION
    assert obj["software"]["intdim"] and obj["software"]["python"]


def test_run_id_is_deterministic_and_covers_every_identity_field():
    base = ("ckpt", "mrpc", "said", 1000, 1e-3, 0)
    assert run_id(*base) == run_id("ckpt", "mrpc", "said", 1000, 0.001, 0)
    variants = [
        ("ckpt2", "mrpc", "said", 1000, 1e-3, 0),
        ("ckpt", "rte", "said", 1000, 1e-3, 0),
        ("ckpt", "mrpc", "did", 1000, 1e-3, 0),
        ("ckpt", "mrpc", "said", 1001, 1e-3, 0),
        ("ckpt", "mrpc", "said", 1000, 2e-3, 0),
        ("ckpt", "mrpc", "said", 1000, 1e-3, 1),
        ("ckpt", "mrpc", "said", 1000, 1e-3, 0, True),  # stopped at the threshold
    ]
    ids = {run_id(*v) for v in variants} | {run_id(*base)}
    assert len(ids) == len(variants) + 1
    # results do not change the id: a rerun lands on the same file
    assert rec(eval_value=0.5).run_id == rec(eval_value=0.9, steps=5).run_id


def test_rerun_replaces_instead_of_duplicating(tmp_path):
    write_record(tmp_path, rec(status="failed", eval_value=None, error="CUDA OOM"))
    write_record(tmp_path, rec(eval_value=0.83))
    back = read_records(tmp_path)
    assert len(back) == 1 and back[0].status == "ok" and back[0].eval_value == 0.83


def test_concurrent_writers_do_not_collide(tmp_path):
    records = [rec(d=100 + i) for i in range(40)]
    threads = [threading.Thread(target=write_record, args=(tmp_path, r)) for r in records]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.d for r in read_records(tmp_path)) == [r.d for r in records]
    assert not [p for p in (tmp_path / "records").iterdir() if p.suffix != ".json"]


def test_no_records_dir_means_no_records(tmp_path):
    assert read_records(tmp_path / "fresh") == []


def test_temp_files_of_inflight_writes_are_ignored(tmp_path):
    write_record(tmp_path, rec())
    (tmp_path / "records" / ".abc.json.x1y2.tmp").write_text("{half a rec")
    (tmp_path / "records" / ".hidden.json").write_text("{half a rec")
    assert len(read_records(tmp_path)) == 1


def test_unknown_future_fields_are_kept(tmp_path):
    r = rec()
    obj = r.to_json()
    obj.update(schema_version="1.7", gpu_hours=0.3, notes={"a": 1})
    path = record_path(tmp_path, r.run_id)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(obj))
    (back,) = read_records(tmp_path)
    assert back.extra == {"gpu_hours": 0.3, "notes": {"a": 1}}
    assert back.eval_value == r.eval_value and back.schema_version == "1.7"
    write_record(tmp_path, back)  # what we do not understand, we write back unchanged
    assert json.loads(path.read_text())["gpu_hours"] == 0.3


def _write_raw(tmp_path, name, obj):
    path = tmp_path / "records" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


def test_newer_major_is_rejected(tmp_path):
    obj = rec().to_json()
    obj["schema_version"] = "2.0"
    _write_raw(tmp_path, "x.json", obj)
    with pytest.raises(UserError, match=r"x\.json has schema version 2\.0, newer .*upgrade"):
        read_records(tmp_path)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda o: o.pop("schema_version"), "no valid schema_version"),
        (lambda o: o.pop("task"), r"lacks required field\(s\): task"),
        (lambda o: o.update(method="lora"), "method must be one of full, did, said"),
        (lambda o: o.update(status="done"), "status must be one of ok, unstable, failed"),
        (lambda o: o.update(d=None), "d must be null for full fine-tuning"),
        (lambda o: o.update(d=0), "d must be a positive integer"),
        (lambda o: o.update(lr=-1), "lr must be a positive number"),
        (lambda o: o.update(status="failed", error=None), "must say why"),
        (lambda o: o.update(eval_value=None), "ok record needs a finite eval_value"),
    ],
)
def test_bad_records_name_the_file(tmp_path, mutate, match):
    obj = rec().to_json()
    mutate(obj)
    _write_raw(tmp_path, "bad.json", obj)
    with pytest.raises(UserError, match=match) as info:
        read_records(tmp_path)
    assert "bad.json" in str(info.value)


def test_invalid_json_names_the_file(tmp_path):
    _write_raw(tmp_path, "broken.json", "{not json")
    with pytest.raises(UserError, match=r"broken\.json is not valid JSON.*delete it"):
        read_records(tmp_path)
    _write_raw(tmp_path, "broken.json", "[1, 2]")
    with pytest.raises(UserError, match="not a JSON object"):
        read_records(tmp_path)
