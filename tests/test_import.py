"""`ur4rec data import`: any interaction log with item text, in four formats, checked row by
row, prepared exactly like the presets, and a non-movie catalogue through the whole pipeline."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ur4rec.cli import main
from ur4rec.data.prepare import open_dataset, prepare_dataset
from ur4rec.data.sources import recbole_folder
from ur4rec.text.corpus import template_texts
from ur4rec.text.domain import Domain, domain_of
from ur4rec.text.templates import item_text

MOVIE_WORDS = re.compile(r"\b(film|films|movie|movies|watched|cinema|decades?)\b", re.I)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def ml100k_csv(path: Path) -> Path:
    """ML-100K's ratings (the RecBole copy) as a plain CSV with a header."""
    folder = recbole_folder()
    assert folder is not None
    frame = pl.read_csv(folder / "ml-100k.inter", separator="\t")
    frame.columns = [c.split(":")[0] for c in frame.columns]
    frame.select("user_id", "item_id", "rating", "timestamp").write_csv(path)
    return path


def raw_sequences(dataset) -> list[tuple[str, list[str], list[int]]]:
    return [
        (
            dataset.user_ids[u],
            [dataset.item_ids[i] for i in dataset.sequence(u)],
            dataset.timestamp[dataset.offsets[u] : dataset.offsets[u + 1]].tolist(),
        )
        for u in range(dataset.n_users)
    ]


def test_ml100k_csv_import_equals_the_presets(capsys, tmp_path: Path) -> None:
    csv = ml100k_csv(tmp_path / "ratings.csv")
    code, out, _ = run(
        capsys, "data", "import", "ml100k-csv", "--interactions", str(csv), "--user-col",
        "user_id", "--item-col", "item_id", "--time-col", "timestamp", "--rating-col", "rating",
        "--json",
    )  # fmt: skip
    assert code == 0
    counts = json.loads(out)["counts"]
    assert (counts["users"], counts["items"], counts["interactions"]) == (943, 1682, 100000)
    imported, preset = open_dataset("ml100k-csv"), prepare_dataset("ml-100k", source="recbole")[0]
    assert imported.user_ids == preset.user_ids and imported.item_ids == preset.item_ids
    assert raw_sequences(imported) == raw_sequences(preset)
    assert np.array_equal(imported.rating, preset.rating)

    code, out, _ = run(
        capsys, "data", "import", "liked-csv", "--interactions", str(csv), "--rating-col",
        "rating", "--min-rating", "4", "--min-user-interactions", "5", "--json",
    )  # fmt: skip
    assert code == 0
    manifest = json.loads(out)
    assert manifest["counts"]["users"] == 938 and manifest["counts"]["interactions"] == 55361
    assert manifest["source_files"]["ratings.csv"] and manifest["import"]["min_rating"] == 4.0
    liked = prepare_dataset("ml-100k-seed", source="recbole")[0]
    assert raw_sequences(open_dataset("liked-csv")) == raw_sequences(liked)


SHOP_ITEMS = [
    ("p1", "Trail Runner", "Footwear|Running", "A light shoe for long runs on rough ground.", 89),
    ("p2", "Road Racer", "Footwear|Running", "A fast shoe with a stiff plate for race day.", 140),
    ("p3", "Rain Shell", "Clothing|Outdoor", "A packable waterproof jacket.", 120),
    ("p4", "Wool Socks", "Clothing|Running", "Merino socks that stay dry.", 15),
    ("p5", "Head Torch", "Gear|Outdoor", "A bright lamp for running at night.", 45),
    ("p6", "Water Bottle", "Gear|Running", "A soft flask that fits a vest pocket.", 20),
    ("p7", "Camp Stove", "Gear|Camping", "A small gas stove for one pot meals.", 60),
    ("p8", "Sleeping Mat", "Gear|Camping", "An inflatable mat that packs small.", 75),
    ("p9", "Trekking Poles", "Gear|Hiking", "Carbon poles that fold in three.", 110),
    ("p10", "Sun Hat", "Clothing|Hiking", "A wide brim hat with a neck cover.", 25),
    ("p11", "Never Bought", "Gear|Camping", "A lantern nobody has bought yet.", 30),
]


def write_shop(folder: Path, n_users: int = 40, length: int = 8) -> tuple[Path, Path]:
    """A shop: customers buy along a cycle of products (learnable), items with categories,
    descriptions and a price."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for u in range(n_users):
        for k in range(length):
            item = SHOP_ITEMS[(u + k) % 10][0]
            rows.append((f"c{u:03d}", item, f"2024-01-{1 + k:02d}T10:{u % 60:02d}:00", 1))
    log = pl.DataFrame(rows, schema=["customer", "sku", "bought_at", "qty"], orient="row")
    log.write_csv(folder / "orders.csv")
    items = pl.DataFrame(
        SHOP_ITEMS, schema=["sku", "name", "category", "blurb", "price"], orient="row"
    )
    items.write_parquet(folder / "products.parquet")
    return folder / "orders.csv", folder / "products.parquet"


SHOP_FLAGS = [
    "--user-col", "customer", "--item-col", "sku", "--time-col", "bought_at",
    "--title-col", "name", "--text-cols", "blurb", "--category-col", "category",
    "--attribute-cols", "price", "--keep-catalog-items", "--domain", "products",
]  # fmt: skip


def test_shop_import_texts_have_no_movie_wording(capsys, tmp_path: Path) -> None:
    orders, products = write_shop(tmp_path / "shop")
    argv = ["data", "import", "shop", "--interactions", str(orders), "--items", str(products)]
    code, out, _ = run(capsys, *argv, *SHOP_FLAGS, "--json")
    assert code == 0
    shop = open_dataset("shop")
    assert json.loads(out)["domain"] == "products" and domain_of(shop) == Domain("products")
    assert shop.n_items == 11  # the never-bought product is kept (--keep-catalog-items)
    info = shop.item_info[shop.item_index("p1")]
    assert info.categories == ("Footwear", "Running") and info.attributes == (("price", 89.0),)
    text = item_text(info, domain_of(shop))
    assert text == (
        "Trail Runner: in footwear and running. A light shoe for long runs on rough ground. "
        "Price 89."
    )
    users = template_texts(shop, "users")
    assert users["c000"].startswith("Chose 6 products, mostly running")
    for written in [*template_texts(shop, "items").values(), *users.values()]:
        assert not MOVIE_WORDS.search(written), written
    from ur4rec.text.generate import build_jobs

    for kind in ("items", "users"):  # the LLM prompts name the domain, never films
        prompt = build_jobs(shop, kind)[0].prompt
        assert "product" in prompt and not MOVIE_WORDS.search(prompt), prompt
    # ISO times became epoch seconds, in order.
    first = shop.timestamp[shop.offsets[0] : shop.offsets[1]]
    assert first[0] == 1704103200 and (np.diff(first) > 0).all()


def test_the_same_import_from_every_format_and_a_config_file(capsys, tmp_path: Path) -> None:
    base = pl.DataFrame(
        {
            "u": ["a", "a", "b", "b", "b", "a"],
            "i": ["x", "y", "x", "z", "y", "z"],
            "t": [3, 1, 5, 5, 9, 2],
        }
    )
    base.write_csv(tmp_path / "log.csv")
    base.write_csv(tmp_path / "log.tsv", separator="\t")
    base.write_parquet(tmp_path / "log.parquet")
    base.write_ndjson(tmp_path / "log.jsonl")
    with gzip.open(tmp_path / "log.jsonl.gz", "wb") as f:
        f.write((tmp_path / "log.jsonl").read_bytes())
    with gzip.open(tmp_path / "log.csv.gz", "wb") as f:
        f.write((tmp_path / "log.csv").read_bytes())
    cols = ["--user-col", "u", "--item-col", "i", "--time-col", "t"]
    results = []
    for name in ("log.csv", "log.tsv", "log.parquet", "log.jsonl", "log.jsonl.gz", "log.csv.gz"):
        tag = name.replace(".", "-")
        assert (
            run(capsys, "data", "import", tag, "--interactions", str(tmp_path / name), *cols)[0]
            == 0
        )
        results.append(raw_sequences(open_dataset(tag)))
    assert all(r == results[0] for r in results)
    # b's two items at time 5 keep their file order (x before z); a's are by time.
    assert results[0] == [("a", ["y", "z", "x"], [1, 2, 3]), ("b", ["x", "z", "y"], [5, 5, 9])]

    config = tmp_path / "cfg" / "shop.yaml"
    config.parent.mkdir()
    config.write_text(
        "name: from-config\ninteractions: ../log.csv\nuser_col: u\nitem_col: i\ntime_col: t\n"
        "min_user_interactions: 3\ndomain: books\n"
    )
    code, out, _ = run(capsys, "data", "import", "--config", str(config), "--json")
    assert code == 0
    manifest = json.loads(out)
    assert manifest["name"] == "from-config" and manifest["domain"] == "books"
    assert raw_sequences(open_dataset("from-config")) == results[0]
    # A flag overrides the file.
    code, _, err = run(
        capsys, "data", "import", "--config", str(config), "--min-user-interactions", "4"
    )
    assert code == 1 and "no user has 4 interactions (min_user_interactions)" in err


def test_duplicates_and_missing_metadata_are_counted(capsys, tmp_path: Path) -> None:
    (tmp_path / "log.csv").write_text(
        "user,item,time,stars\n1,a,10,5\n1,a,10,5\n1,b,11,\n2,c,12,3\n2,a,13,4\n"
    )
    (tmp_path / "items.csv").write_text('id,title\na,Alpha\na,Again\nb,"Beta, the ""best"""\n')
    code, out, err = run(
        capsys, "data", "import", "dups", "--interactions", str(tmp_path / "log.csv"),
        "--items", str(tmp_path / "items.csv"), "--user-col", "user", "--item-col", "item",
        "--time-col", "time", "--rating-col", "stars", "--item-id-col", "id", "--title-col",
        "title", "--json",
    )  # fmt: skip
    assert code == 0
    manifest = json.loads(out)
    assert manifest["dropped"] == {
        "non_finite_ratings": 1,  # the empty rating
        "duplicate_events": 1,
        "repeated_item_rows": 1,  # a's second row
    }
    assert manifest["filled"] == {"items_without_metadata": 1}  # c, kept
    assert "1 item(s) of the log have no metadata" in err
    ds = open_dataset("dups")
    assert [i.title for i in ds.item_info] == ["Alpha", "c"]


def bad(capsys, tmp_path: Path, log: str, *flags: str, items: str | None = None) -> str:
    (tmp_path / "bad.csv").write_text(log)
    argv = ["data", "import", "bad", "--interactions", str(tmp_path / "bad.csv"), *flags]
    if items is not None:
        (tmp_path / "items.csv").write_text(items)
        argv += ["--items", str(tmp_path / "items.csv")]
    code, out, err = run(capsys, *argv)
    assert code == 1 and out == "" and "Traceback" not in err
    return err


LOG = "user_id,item_id,timestamp\n1,a,1\n1,b,2\n2,a,3\n"


@pytest.mark.parametrize(
    ("log", "flags", "message"),
    [
        (LOG, ["--time-col", "when"], "no column(s) ['when']; the columns are ['user_id', 'item_id', 'timestamp']"),
        ("user_id,item_id,timestamp\n1,a,1\n1,b,yesterday\n2,a,x\n", [], "column 'timestamp': 2 row(s) are not a time (an integer or an ISO date-time): rows 2, 3"),
        ("user_id,item_id,timestamp\n1,a,1\n,b,2\n", [], "column 'user_id': 1 row(s) have an empty id: rows 2"),
        ("user_id,item_id,timestamp,r\n1,a,1,good\n", ["--rating-col", "r"], "column 'r': 1 row(s) are not a number: rows 1"),
        (LOG, ["--min-user-interactions", "3"], "no interactions left after filtering: no user has 3 interactions (min_user_interactions)"),
        (LOG, ["--min-item-interactions", "3"], "no item has 3 interactions (min_item_interactions)"),
        ("user_id,item_id,timestamp,r\n1,a,1,2\n", ["--rating-col", "r", "--min-rating", "4"], "no rating is at least 4 (min_rating)"),
        (LOG, ["--min-rating", "4"], "min_rating needs a rating column (--rating-col)"),
        ("", [], "cannot be read as csv"),
    ],
)  # fmt: skip
def test_bad_input_is_named(
    capsys, tmp_path: Path, log: str, flags: list[str], message: str
) -> None:
    assert message in bad(capsys, tmp_path, log, *flags)


def test_bad_input_of_names_files_and_item_tables(capsys, tmp_path: Path) -> None:
    err = bad(capsys, tmp_path, LOG, items="sku,name\na,A\n")
    assert "items.csv: no column(s) ['item_id']; the columns are ['sku', 'name']" in err
    code, _, err = run(capsys, "data", "import", "ml-100k", "--interactions", "x.csv")
    assert code == 1 and "is a preset's name" in err
    code, _, err = run(capsys, "data", "import", "../up", "--interactions", "x.csv")
    assert code == 1 and "dataset name '../up'" in err
    code, _, err = run(capsys, "data", "import", "x", "--interactions", str(tmp_path / "nope.csv"))
    assert code == 1 and "missing file" in err
    (tmp_path / "log.xlsx").write_text("x")
    code, _, err = run(capsys, "data", "import", "x", "--interactions", str(tmp_path / "log.xlsx"))
    assert code == 1 and "unknown file type" in err
    code, _, err = run(capsys, "baseline", "pop", "--dataset", "never-imported")
    assert code == 1 and "unknown dataset 'never-imported'" in err


def test_a_failed_import_keeps_the_earlier_one(capsys, tmp_path: Path) -> None:
    (tmp_path / "log.csv").write_text(LOG)
    assert (
        run(capsys, "data", "import", "keep", "--interactions", str(tmp_path / "log.csv"))[0] == 0
    )
    before = open_dataset("keep").content_hash
    (tmp_path / "log.csv").write_text("user_id,item_id,timestamp\n1,a,soon\n")
    assert (
        run(capsys, "data", "import", "keep", "--interactions", str(tmp_path / "log.csv"))[0] == 1
    )
    assert open_dataset("keep").content_hash == before


def test_a_shop_goes_through_training_recommending_and_serving(capsys, tmp_path: Path) -> None:
    """Import, template texts, the four-stage UR4Rec (tiny), evaluate, recommend with
    explanations and serve: no film wording in any text it writes or answers."""
    from fastapi.testclient import TestClient

    from tests.test_ur4rec import TINY_UR4REC
    from ur4rec.serve.app import create_app
    from ur4rec.serve.recommender import Recommender

    orders, products = write_shop(tmp_path / "shop")
    argv = ["data", "import", "shop", "--interactions", str(orders), "--items", str(products)]
    assert run(capsys, *argv, *SHOP_FLAGS)[0] == 0
    texts = tmp_path / "items.json"
    code, _, _ = run(capsys, "texts", "generate", "--dataset", "shop", "--kind", "items",
                     "--out", str(texts))  # fmt: skip
    assert code == 0
    written = json.loads(texts.read_text())
    assert len(written) == 11 and not any(MOVIE_WORDS.search(t) for t in written.values())

    out = tmp_path / "run"
    config = Path(__file__).parent.parent / "configs" / "ur4rec-ml-100k-liked.yaml"
    train = ["train", "--config", str(config), "--out", str(out), "--quiet", "--json",
             "--set", "data.dataset=shop"]  # fmt: skip
    for item in TINY_UR4REC:
        train += ["--set", item]
    code, result, _ = run(capsys, *train)
    assert code == 0
    assert [s["stage"] for s in json.loads(result)["stages"]] == [
        "pretrain_sasrec", "pretrain_retriever", "joint_finetune", "end_to_end",
    ]  # fmt: skip
    code, result, _ = run(capsys, "evaluate", str(out), "--json")
    assert code == 0 and json.loads(result)["users"] == 40

    code, result, _ = run(capsys, "recommend", str(out), "--user", "c000", "-k", "3", "--json")
    assert code == 0
    recs = json.loads(result)
    assert len(recs["items"]) == 3 and all(r["explanation"] for r in recs["items"])
    assert not MOVIE_WORDS.search(result)
    from ur4rec.serve.explain import explanation_prompt

    prompt = explanation_prompt(recs["items"][0], domain_of(open_dataset("shop")))
    assert "product recommendations" in prompt and not MOVIE_WORDS.search(prompt)

    client = TestClient(create_app(Recommender(out)))
    answer = client.get("/users/c001/recommendations", params={"k": 3, "explain": "true"})
    assert answer.status_code == 200 and len(answer.json()["items"]) == 3
    answer = client.post(
        "/recommendations", json={"history": ["p1", "p2"], "k": 3, "explain": True}
    )
    assert answer.status_code == 200, answer.text
    assert not MOVIE_WORDS.search(answer.text)
    ids = [r["item"] for r in answer.json()["items"]]
    assert len(ids) == 3 and not {"p1", "p2"} & set(ids) and set(ids) <= {i for i, *_ in SHOP_ITEMS}


def test_the_readme_example_imports(capsys) -> None:
    config = Path(__file__).parent.parent / "examples" / "shop" / "shop.yaml"
    code, out, _ = run(capsys, "data", "import", "--config", str(config), "--json")
    assert code == 0
    manifest = json.loads(out)
    assert manifest["name"] == "shop" and manifest["domain"] == "products"
    assert (manifest["counts"]["users"], manifest["counts"]["items"]) == (60, 11)
    assert manifest["counts"]["interactions"] == 360
