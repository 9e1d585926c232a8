"""Task files and loading: every shipped task parses; local GLUE layouts, jsonl and csv load; every
bad input is one UserError naming the problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from intdim.errors import UserError
from probe.tasks import Example, load_examples, load_task_spec, task_registry


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def tsv(*rows: str) -> str:
    return "\n".join(rows) + "\n"


# ----------------------------------------------------------------------------- shipped task files


def test_shipped_tasks_cover_the_paper_and_extras():
    names = set(task_registry().names())
    assert {"mrpc", "qqp", "sst2", "mnli", "anli", "yelp_polarity", "rte", "cola", "qnli"} <= names
    assert not any(n.startswith("_") for n in names)  # templates are not tasks


def test_shipped_task_details():
    mnli = load_task_spec("mnli")
    assert mnli.hub.eval_splits == ["validation_matched"]
    assert mnli.local.eval_files == ["dev_matched.tsv"]
    anli = load_task_spec("anli")
    assert anli.hub.train_splits == ["train_r1", "train_r2", "train_r3"]
    assert anli.hub.eval_splits == ["dev_r1", "dev_r2", "dev_r3"]
    assert load_task_spec("mrpc").metrics == ["accuracy", "f1"]
    assert load_task_spec("qqp").metrics == ["accuracy", "f1"]
    assert load_task_spec("sst2").metrics == ["accuracy"]
    # the include chain: anli_r2 keeps anli's labels and label map but narrows the splits
    r2 = load_task_spec("anli_r2")
    assert r2.labels == anli.labels and r2.local.label_map == anli.local.label_map
    assert r2.hub.train_splits == ["train_r2"] and r2.local.eval_files == ["R2/dev.jsonl"]
    mm = load_task_spec("mnli_mismatched")
    assert mm.hub.eval_splits == ["validation_mismatched"] and mm.hub.name == "mnli"


def test_unknown_task_name_lists_valid_ones():
    with pytest.raises(UserError, match=r"unknown task 'mrcp'.*mrpc"):
        load_task_spec("mrcp")


# ----------------------------------------------------------------------------- GLUE layouts


def test_sst2_local(tmp_path):
    write(tmp_path / "train.tsv", tsv("sentence\tlabel", "good film \t1", "bad film \t0", "ok\t1"))
    write(tmp_path / "dev.tsv", tsv("sentence\tlabel", "great\t1", "awful\t0"))
    data = load_examples(load_task_spec("sst2"), tmp_path)
    assert data.train == [
        Example("good film ", None, 1),
        Example("bad film ", None, 0),
        Example("ok", None, 1),
    ]
    assert data.eval == [Example("great", None, 1), Example("awful", None, 0)]
    assert data.num_labels == 2
    assert data.majority_baseline == 0.5  # train majority is 1; eval has one 1 of two


def test_mrpc_local_with_quotes_and_f1(tmp_path):
    header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"
    write(
        tmp_path / "train.tsv",
        tsv(header, '1\t1\t2\tHe said "yes".\tHe agreed.', "0\t3\t4\tA cat.\tA dog."),
    )
    write(tmp_path / "dev.tsv", tsv(header, "1\t5\t6\tX\tY", "0\t7\t8\tP\tQ", "1\t9\t9\tR\tS"))
    data = load_examples(load_task_spec("mrpc"), tmp_path)
    # a lone quote in a GLUE tsv is text, not csv quoting
    assert data.train[0] == Example('He said "yes".', "He agreed.", 1)
    labels = [ex.label for ex in data.eval]  # [1, 0, 1]
    got = data.metric([1, 1, 0], labels)
    assert got["accuracy"] == pytest.approx(1 / 3)
    assert got["f1"] == pytest.approx(0.5)  # tp=1 fp=1 fn=1


def test_rte_string_labels(tmp_path):
    header = "index\tsentence1\tsentence2\tlabel"
    write(tmp_path / "train.tsv", tsv(header, "0\tA\tB\tnot_entailment", "1\tC\tD\tentailment"))
    write(tmp_path / "dev.tsv", tsv(header, "0\tE\tF\tentailment"))
    data = load_examples(load_task_spec("rte"), tmp_path)
    assert [ex.label for ex in data.train] == [1, 0]
    assert data.eval == [Example("E", "F", 0)]


def test_cola_has_no_header(tmp_path):
    rows = ["gj04\t1\t\tThe sailors rode the breeze.", "gj04\t0\t*\tRode sailors the."]
    write(tmp_path / "train.tsv", tsv(*rows))
    write(tmp_path / "dev.tsv", tsv(rows[1]))  # the real dev.tsv has no trailing newline either
    data = load_examples(load_task_spec("cola"), tmp_path)
    # the first line is data, not a header
    assert data.train == [
        Example("The sailors rode the breeze.", None, 1),
        Example("Rode sailors the.", None, 0),
    ]
    assert data.eval == [Example("Rode sailors the.", None, 0)]


def test_anli_jsonl_all_rounds(tmp_path):
    def jl(*objs):
        return "".join(json.dumps(o) + "\n" for o in objs)

    for r, lab in zip((1, 2, 3), "enc", strict=True):
        write(
            tmp_path / f"R{r}/train.jsonl",
            jl({"uid": r, "context": f"c{r}", "hypothesis": f"h{r}", "label": lab}),
        )
        # HF-exported files say premise instead of context; both are accepted
        write(
            tmp_path / f"R{r}/dev.jsonl",
            "\n" + jl({"premise": f"p{r}", "hypothesis": "h", "label": "c"}),
        )
    data = load_examples(load_task_spec("anli"), tmp_path)
    assert data.train == [Example("c1", "h1", 0), Example("c2", "h2", 1), Example("c3", "h3", 2)]
    assert [ex.text_a for ex in data.eval] == ["p1", "p2", "p3"]
    assert data.num_labels == 3
    only_r2 = load_examples(load_task_spec("anli_r2"), tmp_path)
    assert only_r2.train == [Example("c2", "h2", 1)]


def test_yelp_csv_no_header_label_map(tmp_path):
    write(tmp_path / "train.csv", '"1","Terrible, just ""bad"""\n"2","Loved it"\n')
    write(tmp_path / "test.csv", '"2","Fine\nplace"\n')
    data = load_examples(load_task_spec("yelp_polarity"), tmp_path)
    assert data.train == [Example('Terrible, just "bad"', None, 0), Example("Loved it", None, 1)]
    assert data.eval == [Example("Fine\nplace", None, 1)]  # quoted newline stays inside the text


GENERIC = """\
name: reviews
labels: [neg, pos]
local:
  format: {fmt}
  train_files: [train.{fmt}]
  eval_files: [dev.{fmt}]
  text_fields: [review]
  label_field: stars
  label_map: {{1: neg, 2: neg, 4: pos, 5: pos}}
"""


def test_generic_csv_field_mapping(tmp_path):
    spec_path = write(tmp_path / "reviews.yaml", GENERIC.format(fmt="csv"))
    write(tmp_path / "data/train.csv", 'id,review,stars\n1,meh,2\n2,"wow, great",5\n')
    write(tmp_path / "data/dev.csv", "id,review,stars\n3,nice,4\n")
    spec = load_task_spec(spec_path)
    assert spec.name == "reviews" and spec.hub is None
    data = load_examples(spec, tmp_path / "data")
    assert data.train == [Example("meh", None, 0), Example("wow, great", None, 1)]
    assert data.eval == [Example("nice", None, 1)]


def test_generic_jsonl_field_mapping(tmp_path):
    spec = load_task_spec(write(tmp_path / "r.yaml", GENERIC.format(fmt="jsonl")))
    write(tmp_path / "d/train.jsonl", '{"review": "bad", "stars": 1}\n')
    write(tmp_path / "d/dev.jsonl", '{"review": "good", "stars": 5}\n')
    data = load_examples(spec, tmp_path / "d")
    assert data.train == [Example("bad", None, 0)] and data.eval == [Example("good", None, 1)]


@pytest.mark.parametrize("fmt", ["tsv", "csv", "jsonl"])
def test_a_byte_order_mark_is_not_part_of_the_first_field(tmp_path, fmt):
    # GLUE's MRPC train.tsv and dev.tsv start with a UTF-8 byte-order mark.
    bom = "\ufeff"
    if fmt == "tsv":
        header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"
        write(tmp_path / "train.tsv", bom + tsv(header, "1\t1\t2\tA cat.\tA cat!"))
        write(tmp_path / "dev.tsv", bom + tsv(header, "0\t3\t4\tA dog.\tA fish."))
        spec, data_dir = load_task_spec("mrpc"), tmp_path
        want = [Example("A cat.", "A cat!", 1)], [Example("A dog.", "A fish.", 0)]
    else:
        spec = load_task_spec(write(tmp_path / "r.yaml", GENERIC.format(fmt=fmt)))
        data_dir = tmp_path / "d"
        if fmt == "csv":  # the BOM sits before the first column's name
            write(data_dir / "train.csv", bom + "review,stars,id\nmeh,2,1\n")
            write(data_dir / "dev.csv", bom + "review,stars,id\nnice,4,3\n")
        else:  # the BOM sits before the first line's {
            write(data_dir / "train.jsonl", bom + '{"review": "meh", "stars": 2}\n')
            write(data_dir / "dev.jsonl", bom + '{"review": "nice", "stars": 4}\n')
        want = [Example("meh", None, 0)], [Example("nice", None, 1)]
    data = load_examples(spec, data_dir)
    assert (data.train, data.eval) == want


# ----------------------------------------------------------------------------- subsampling


def _sst2_dir(tmp_path: Path, n_train: int, n_eval: int) -> Path:
    write(
        tmp_path / "train.tsv",
        tsv("sentence\tlabel", *(f"t{i}\t{int(i % 3 == 0)}" for i in range(n_train))),
    )
    write(tmp_path / "dev.tsv", tsv("sentence\tlabel", *(f"e{i}\t{i % 2}" for i in range(n_eval))))
    return tmp_path


def test_subsampling_is_seeded_and_independent_per_split(tmp_path):
    d = _sst2_dir(tmp_path, 50, 40)
    spec = load_task_spec("sst2")
    a = load_examples(spec, d, max_train=10, max_eval=7, seed=3)
    b = load_examples(spec, d, max_train=10, max_eval=7, seed=3)
    c = load_examples(spec, d, max_train=10, max_eval=7, seed=4)
    assert a.train == b.train and a.eval == b.eval
    assert a.train != c.train
    assert len(a.train) == 10 and len(a.eval) == 7 and len(set(a.train)) == 10
    # file order is kept, so a sample is a subsequence of the file
    idx = [int(ex.text_a[1:]) for ex in a.train]
    assert idx == sorted(idx)
    # changing the train limit leaves the eval sample untouched
    assert load_examples(spec, d, max_train=20, max_eval=7, seed=3).eval == a.eval
    # limits above the split size keep everything
    assert len(load_examples(spec, d, max_train=1000).train) == 50


def test_majority_baseline_uses_train_majority(tmp_path):
    d = _sst2_dir(tmp_path, 30, 10)  # train: 10 positives, 20 negatives -> majority 0
    data = load_examples(load_task_spec("sst2"), d)
    assert data.majority_baseline == pytest.approx(0.5)
    write(tmp_path / "dev.tsv", tsv("sentence\tlabel", "a\t0", "b\t0", "c\t0", "d\t1"))
    assert load_examples(load_task_spec("sst2"), d).majority_baseline == pytest.approx(0.75)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_limits(tmp_path, bad):
    with pytest.raises(UserError, match="max_train_examples must be a positive integer"):
        load_examples(load_task_spec("sst2"), _sst2_dir(tmp_path, 3, 3), max_train=bad)


# ----------------------------------------------------------------------------- hub path


class FakeHub:
    """Stands in for `datasets.load_dataset`: real `datasets.Dataset` objects, no network."""

    def __init__(self, tables):
        self.tables = tables
        self.calls = []

    def __call__(self, path, name=None, split=None, revision=None):
        import datasets

        self.calls.append((path, name, split))
        if split not in self.tables:
            raise ValueError(f"Unknown split {split!r}")
        return datasets.Dataset.from_dict(self.tables[split])


def test_hub_loading_concatenates_splits_and_subsamples(monkeypatch):
    import datasets

    def table(r, n):
        return {
            "premise": [f"p{r}-{i}" for i in range(n)],
            "hypothesis": ["h"] * n,
            "label": [i % 3 for i in range(n)],
            "uid": list(range(n)),
        }

    fake = FakeHub(
        {
            "train_r1": table(1, 4),
            "train_r2": table(2, 3),
            "train_r3": table(3, 2),
            "dev_r1": table(1, 2),
            "dev_r2": table(2, 2),
            "dev_r3": table(3, 2),
        }
    )
    monkeypatch.setattr(datasets, "load_dataset", fake)
    spec = load_task_spec("anli")
    data = load_examples(spec)
    assert ("facebook/anli", None, "train_r3") in fake.calls
    assert len(data.train) == 9 and len(data.eval) == 6
    assert data.train[4] == Example("p2-0", "h", 0)
    sub = load_examples(spec, max_train=5, seed=1)
    assert len(sub.train) == 5 and set(sub.train) <= set(data.train)
    assert sub.train == load_examples(spec, max_train=5, seed=1).train


def test_hub_failure_says_use_a_data_dir(monkeypatch):
    import datasets

    monkeypatch.setattr(datasets, "load_dataset", FakeHub({}))
    with pytest.raises(UserError, match=r"cannot load nyu-mll/glue/sst2 split train.*data dir"):
        load_examples(load_task_spec("sst2"))


def test_hub_unknown_label(monkeypatch):
    import datasets

    monkeypatch.setattr(
        datasets,
        "load_dataset",
        FakeHub(
            {
                "train": {
                    "sentence": ["a", "b"],
                    "label": [0, -1],
                },  # -1: GLUE's unlabeled test marker
                "validation": {"sentence": ["c"], "label": [1]},
            }
        ),
    )
    with pytest.raises(UserError, match=r"sst2 train row 1: unknown label '-1'"):
        load_examples(load_task_spec("sst2"))


def test_hub_missing_field(monkeypatch):
    import datasets

    monkeypatch.setattr(
        datasets,
        "load_dataset",
        FakeHub(
            {
                "train": {"text": ["a"], "label": [0]},
                "validation": {"text": ["c"], "label": [1]},
            }
        ),
    )
    with pytest.raises(UserError, match=r"has no field 'sentence' \(it has: text, label\)"):
        load_examples(load_task_spec("sst2"))


def test_hub_empty_split(monkeypatch):
    import datasets

    monkeypatch.setattr(
        datasets,
        "load_dataset",
        FakeHub(
            {
                "train": {"sentence": [], "label": []},
                "validation": {"sentence": ["x"], "label": [0]},
            }
        ),
    )
    with pytest.raises(UserError, match="is empty"):
        load_examples(load_task_spec("sst2"))


# ----------------------------------------------------------------------------- bad local data


def test_missing_file(tmp_path):
    write(tmp_path / "train.tsv", tsv("sentence\tlabel", "a\t1"))
    with pytest.raises(UserError, match=r"dev\.tsv does not exist"):
        load_examples(load_task_spec("sst2"), tmp_path)


def test_missing_data_dir(tmp_path):
    with pytest.raises(UserError, match="data dir .* does not exist"):
        load_examples(load_task_spec("sst2"), tmp_path / "nope")


def test_missing_column(tmp_path):
    write(tmp_path / "train.tsv", tsv("text\tlabel", "a\t1"))
    write(tmp_path / "dev.tsv", tsv("sentence\tlabel", "a\t1"))
    with pytest.raises(UserError, match=r"has no field 'sentence' \(it has: text, label"):
        load_examples(load_task_spec("sst2"), tmp_path)


def test_short_row(tmp_path):
    write(tmp_path / "train.tsv", tsv("index\tsentence1\tsentence2\tlabel", "0\tonly one"))
    write(tmp_path / "dev.tsv", tsv("index\tsentence1\tsentence2\tlabel", "0\ta\tb\tentailment"))
    with pytest.raises(UserError, match=r"train\.tsv:2: expected 4 columns"):
        load_examples(load_task_spec("rte"), tmp_path)


def test_unknown_label(tmp_path):
    header = "index\tsentence1\tsentence2\tlabel"
    write(tmp_path / "train.tsv", tsv(header, "0\ta\tb\tentailment", "1\tc\td\tneutral"))
    write(tmp_path / "dev.tsv", tsv(header, "0\ta\tb\tentailment"))
    with pytest.raises(UserError, match=r"train\.tsv:3: unknown label 'neutral'"):
        load_examples(load_task_spec("rte"), tmp_path)


def test_unknown_label_through_label_map(tmp_path):
    write(tmp_path / "R1/train.jsonl", '{"context": "a", "hypothesis": "b", "label": "x"}\n')
    with pytest.raises(UserError, match=r"unknown label 'x'; the task's label_map knows c, e, n"):
        load_examples(load_task_spec("anli_r1"), tmp_path)


def test_label_index_out_of_range(tmp_path):
    write(tmp_path / "train.tsv", tsv("sentence\tlabel", "a\t2"))
    write(tmp_path / "dev.tsv", tsv("sentence\tlabel", "a\t1"))
    with pytest.raises(UserError, match=r"unknown label '2'"):
        load_examples(load_task_spec("sst2"), tmp_path)


def test_empty_split(tmp_path):
    write(tmp_path / "train.tsv", tsv("sentence\tlabel", "a\t1"))
    write(tmp_path / "dev.tsv", "sentence\tlabel\n\n")
    with pytest.raises(UserError, match=r"the eval split \(dev\.tsv in .*\) has no examples"):
        load_examples(load_task_spec("sst2"), tmp_path)


def test_jsonl_bad_line_and_missing_field(tmp_path):
    write(tmp_path / "R1/dev.jsonl", '{"context": "a", "hypothesis": "b", "label": "e"}\n')
    write(tmp_path / "R1/train.jsonl", '{"context": "a", "hypothesis": "b", "label": "e"}\n{oops\n')
    with pytest.raises(UserError, match=r"train\.jsonl:2: not valid JSON"):
        load_examples(load_task_spec("anli_r1"), tmp_path)
    write(tmp_path / "R1/train.jsonl", '{"context": "a", "label": "e"}\n')
    with pytest.raises(UserError, match=r"train\.jsonl:1 has no field 'hypothesis'"):
        load_examples(load_task_spec("anli_r1"), tmp_path)
    write(tmp_path / "R1/train.jsonl", '{"context": "a", "hypothesis": null, "label": "e"}\n')
    with pytest.raises(UserError, match=r"field 'hypothesis' is missing or null"):
        load_examples(load_task_spec("anli_r1"), tmp_path)


def test_data_dir_for_hub_only_task(tmp_path):
    spec = load_task_spec(
        write(tmp_path / "h.yaml", "name: h\nlabels: [a, b]\nhub: {path: x/y, text_fields: [t]}\n")
    )
    with pytest.raises(UserError, match="declares no local layout"):
        load_examples(spec, tmp_path)


# ----------------------------------------------------------------------------- bad task files


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("name: x\nlabels: [a, b\n", "is not valid YAML"),
        ("- just\n- a list\n", "must hold a mapping"),
        (
            "name: x\nlabels: [a, b]\nhub: {path: p, text_fields: [t]}\nlables: [a]\n",
            r"malformed.*lables",
        ),
        ("name: x\nlabels: [a, b]\nhub: {pth: p, text_fields: [t]}\n", r"malformed.*pth"),
        ("name: x\nlabels: [a, b]\nhub: {text_fields: [t]}\n", r"missing mandatory value: path"),
        ("name: x\nlabels: [a, b]\n", "declare a hub source, a local source, or both"),
        ("name: x\nlabels: [a]\nhub: {path: p, text_fields: [t]}\n", "2 or more distinct"),
        ("name: x\nlabels: [a, b]\nhub: {path: p, text_fields: [t, u, v]}\n", "one or two"),
        (
            "name: x\nlabels: [a, b]\nmetrics: [accuracy, mcc]\nhub: {path: p, text_fields: [t]}\n",
            "unknown metric 'mcc'",
        ),
        (
            "name: x\nlabels: [a, b, c]\nmetrics: [accuracy, f1]\n"
            "hub: {path: p, text_fields: [t]}\n",
            "f1 needs exactly 2 labels",
        ),
        (
            "name: x\nlabels: [a, b]\nlocal: {format: xml, train_files: [t], eval_files: [e], "
            "text_fields: [t]}\n",
            "unknown local format 'xml'",
        ),
        (
            "name: x\nlabels: [a, b]\nlocal: {header: false, train_files: [t], eval_files: [e], "
            "text_fields: [t]}\n",
            "must list its columns",
        ),
        (
            "name: x\nlabels: [a, b]\nhub: {path: p, text_fields: [t], label_map: {0: z}}\n",
            "unknown label 'z'",
        ),
        ("include: nowhere.yaml\nname: x\n", r"nowhere\.yaml does not exist"),
        ("include: [a.yaml]\nname: x\n", "include must be one file name"),
    ],
)
def test_malformed_task_file(tmp_path, text, match):
    with pytest.raises(UserError, match=match):
        load_task_spec(write(tmp_path / "t.yaml", text))


def test_include_cycle(tmp_path):
    write(tmp_path / "a.yaml", "include: b.yaml\nname: a\n")
    write(tmp_path / "b.yaml", "include: a.yaml\nlabels: [x, y]\n")
    with pytest.raises(UserError, match=r"includes itself: a\.yaml -> b\.yaml -> a\.yaml"):
        load_task_spec(tmp_path / "a.yaml")


def test_missing_task_file():
    with pytest.raises(UserError, match="does not exist"):
        load_task_spec("/no/such/task.yaml")


def test_registry_fails_loudly_on_a_broken_file(tmp_path):
    write(tmp_path / "good.yaml", "name: good\nlabels: [a, b]\nhub: {path: p, text_fields: [t]}\n")
    write(tmp_path / "broken.yaml", "name: broken\nlabels: [a, b\n")
    with pytest.raises(UserError, match=r"broken\.yaml is not valid YAML"):
        load_task_spec("good", tasks_dir=tmp_path)


def test_registry_rejects_duplicate_names(tmp_path):
    body = "name: same\nlabels: [a, b]\nhub: {path: p, text_fields: [t]}\n"
    write(tmp_path / "one.yaml", body)
    write(tmp_path / "two.yaml", body)
    with pytest.raises(UserError, match=r"'same' is declared twice: .*one\.yaml and .*two\.yaml"):
        task_registry(tmp_path)


def test_registry_with_include_and_template(tmp_path):
    write(tmp_path / "_base.yaml", "labels: [a, b]\nhub: {path: p, text_fields: [t]}\n")
    write(tmp_path / "v1.yaml", "include: _base.yaml\nname: v1\n")
    write(tmp_path / "v2.yaml", "include: v1.yaml\nname: v2\nhub: {name: sub}\n")
    reg = task_registry(tmp_path)
    assert reg.names() == ["v1", "v2"]
    assert reg.get("v2").hub.path == "p" and reg.get("v2").hub.name == "sub"
    assert reg.get("v1").hub.name is None
