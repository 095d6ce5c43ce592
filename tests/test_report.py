"""The report: stats.json of a real dataset rendered as table, CSV, DataFrame and HTML."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from beam_jobs import prepare
from boxweight.cli import main as cli_main
from tests.conftest import shared
from weighting import report
from weighting.report import page as report_page

IN_PROCESS = ["--runner=DirectRunner", "--direct_running_mode=in_memory"]


@pytest.fixture(scope="module")
def cards_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("cards")
    prepare.run(
        ["--input", str(shared("cards-voc")), "--output", str(out), "--scheme=inverse_sqrt", *IN_PROCESS],
        print_report=False,
    )
    return out


def test_load_gives_one_row_per_split_and_class(cards_out):
    frame = report.load(str(cards_out))
    doc = frame.attrs["stats"]
    assert (
        len(frame) == sum(len(e["classes"]) for e in doc["splits"].values()) == 18
    )  # train, val (carved from train), test
    assert set(frame.columns) >= {
        "split",
        "id",
        "name",
        "boxes",
        "images",
        "share",
        "weight",
        "repeat_factor",
        "size_small",
    }
    train = frame[frame.split == "train"]
    assert train.share.sum() == pytest.approx(1.0)
    csv_text = (cards_out / "report.csv").read_text()
    assert csv_text.splitlines()[0].startswith("split,id,name,boxes")
    assert len(csv_text.splitlines()) == 19


def test_terminal_table_sorted_by_frequency_with_totals(cards_out, capsys):
    assert cli_main(["report", str(cards_out)]) == 0
    text = capsys.readouterr().out
    assert "scheme: inverse_sqrt" in text
    assert "images: 363 in = 363 written + 0 quarantined" in text
    train = text.split("[train]")[1].split("[")[0]
    counts = [int(line.split()[2]) for line in train.splitlines()[1:] if line.strip()[:1].isdigit()]
    assert counts == sorted(counts, reverse=True) and len(counts) == 6
    headers = [line.split("]")[0] + "]" for line in text.splitlines() if line.startswith("[")]
    assert headers == ["[train]", "[val]", "[test]"]  # reading order, not stats.json's sorted keys
    csv_splits = [line.split(",")[0] for line in (cards_out / "report.csv").read_text().splitlines()[1:]]
    assert list(dict.fromkeys(csv_splits)) == ["train", "val", "test"]


def test_compare_two_outputs(cards_out, capsys):
    assert cli_main(["report", "--compare", str(cards_out), str(cards_out)]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0] == f"A = {cards_out}: scheme inverse_sqrt (normalize=min, repeat_threshold=0.001)"
    assert "[train]" in text and "+0.00pp" in text and "1.00x" in text and "class sets differ" not in text


def test_compare_shows_both_schemes_weights_with_units_and_says_when_classes_differ(cards_out):
    import copy

    a = report.load(str(cards_out)).attrs["stats"]
    b = copy.deepcopy(a)
    b["scheme"].update(name="effective_number", beta=0.99, max_weight=3.0)
    first = b["splits"]["train"]["classes"][0]
    first["weight"] *= 2
    gone = b["splits"]["train"]["classes"][-1]["name"]
    for entry in b["splits"].values():  # one class renamed in every split
        for c in entry["classes"]:
            c["name"] = "joker" if c["name"] == gone else c["name"]
    text = report.render_compare(a, b, "a", "b")
    lines = text.splitlines()
    assert (
        lines[1] == "B = b: scheme effective_number (beta=0.99, max_weight=3.0, normalize=min, repeat_threshold=0.001)"
    )
    assert lines[2] == f"the class sets differ: only in A: {gone}; only in B: joker"
    train = text.split("[train]")[1].split("[")[0].splitlines()
    header = train[1]
    row = next(line for line in train if line.split()[:1] == [first["name"]])
    assert row.split()[-1] == "2.00x" and row.split()[-2] == "+0.00pp"
    assert row.rstrip().endswith("2.00x") and len(row.rstrip()) == len(
        header.rstrip()
    )  # columns line up with the header
    joker = next(line for line in train if line.split()[:1] == ["joker"])
    assert joker.split()[1:4] == ["-", "-", "-"] and joker.split()[-2:] == ["-", "-"]


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.svgs, self.external, self._svg, self._depth = 0, [], [], None, 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and attrs.get("class") == "class-row":
            self.rows += 1
        for key in ("src", "href"):
            if attrs.get(key) and not attrs[key].startswith("data:image/jpeg;base64,"):  # embedded thumbnails
                self.external.append(attrs[key])
        if tag == "script":
            self.external.append("script")


def test_html_is_standalone_with_a_row_per_class_and_parseable_charts(cards_out):
    page = (cards_out / "report.html").read_text()
    doc = report.load(str(cards_out)).attrs["stats"]
    parser = _Collect()
    parser.feed(page)
    assert parser.rows == sum(len(e["classes"]) for e in doc["splits"].values())
    assert parser.external == []  # no CDN, no script, no links
    svgs = [page[i : page.index("</svg>", i) + 6] for i in range(len(page)) if page.startswith("<svg", i)]
    assert len(svgs) >= 4 * len(
        doc["splits"]
    )  # per split: boxes, weights, sizes, boxes per image (and log and repeat views)
    for svg in svgs:
        root = ET.fromstring(svg)  # each chart is well-formed SVG
        assert root.findall(".//{http://www.w3.org/2000/svg}rect")
    assert doc["command"] in page.replace("&#x27;", "'").replace("&quot;", '"')


def _long_names(doc, names=("ic bag - wrapper - a class name of sixty characters, give or take", "x")):
    import copy

    doc = copy.deepcopy(doc)
    for entry in doc["splits"].values():
        for c, name in zip(entry["classes"], names):
            c["name"] = name
    return doc


def test_the_page_lists_the_first_rejects_with_their_files_and_says_where_the_rest_are(cards_out):
    doc = report.load(str(cards_out)).attrs["stats"]
    rejects = [
        {
            "source": f"labels/{i}.txt",
            "image": f"images/{i}.jpg",
            "kind": "image",
            "reason": "image_missing",
            "detail": "<gone>",
        }
        for i in range(150)
    ]
    page = report_page.render(doc, rejects[: report_page.REJECTS_SHOWN], 150)
    assert page.count("<td class='name'>images/") == 100 and "images/99.jpg" in page and "images/100.jpg" not in page
    assert "The other 50 are in <code>rejects.jsonl</code>" in page and "&lt;gone&gt;" in page
    assert "Nothing was rejected." in report_page.render(doc, [], 0)


def _chromium() -> str | None:
    import shutil

    return next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)


_CHECK = """<script>
addEventListener('load', () => {
  const bad = [];
  for (const t of document.querySelectorAll('svg text')) {
    const s = t.ownerSVGElement.getBoundingClientRect(), r = t.getBoundingClientRect();
    if (r.left < s.left - 1 || r.right > s.right + 1 || r.top < s.top - 1 || r.bottom > s.bottom + 1) bad.push('svg text cut: ' + t.textContent);
  }
  if (document.documentElement.scrollWidth > innerWidth + 1) bad.push('page wider than the window');
  document.body.setAttribute('data-overflow', JSON.stringify(bad));
});
</script>"""


@pytest.mark.parametrize("width", [1280, 420])
def test_report_html_in_headless_chromium_has_no_cut_label_no_overflow_and_no_console_error(cards_out, tmp_path, width):
    import html
    import json
    import subprocess

    chromium = _chromium()
    if chromium is None:
        pytest.skip("no Chromium here (apt-get install chromium; .ci/run installs it)")
    doc = _long_names(report.load(str(cards_out)).attrs["stats"])
    pictures = {
        name: [report_page.Thumbnail(f"train/{name}", 1, uri) for uri in uris]
        for name, uris in _thumbnails(cards_out).items()
    }
    page = report_page.render(doc, [], 0, pictures).replace("</body>", _CHECK + "</body>")
    (tmp_path / "report.html").write_text(page)
    done = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=5000",
            f"--window-size={width},2000",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            (tmp_path / "report.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = done.stdout.split('data-overflow="', 1)
    assert len(found) == 2, "the check script did not run"
    assert json.loads(html.unescape(found[1].split('"', 1)[0])) == []
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line]
    assert console == [], console


def _thumbnails(out) -> dict[str, list[str]]:
    """The thumbnails of report.html by class (the strip's name cell), as data URIs."""
    page = (out / "report.html").read_text()
    strips = {}
    for strip in page.split("<div class='strip'>")[1:]:
        name = strip.split("title='", 1)[1].split("'", 1)[0]
        strips[name] = [part.split("'", 1)[0] for part in strip.split("<img src='")[1:]]
    return strips


def test_each_class_has_a_strip_of_its_images_with_its_boxes_drawn_rarest_first(cards_out):
    import base64
    import io

    import numpy as np
    from PIL import Image

    from weighting.report import thumbnails

    doc = report.load(str(cards_out)).attrs["stats"]
    boxes = {}
    for entry in doc["splits"].values():
        for c in entry["classes"]:
            boxes[c["name"]] = boxes.get(c["name"], 0) + c["boxes"]
    strips = _thumbnails(cards_out)
    assert list(strips) == sorted(boxes, key=lambda n: (boxes[n], n))  # rarest first
    for uris in strips.values():
        assert len(uris) == thumbnails.PER_CLASS
        for uri in uris:
            image = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
            assert image.format == "JPEG" and max(image.size) == thumbnails.SIDE
            pixels = np.asarray(image.convert("RGB")).astype(int)
            red = (pixels[..., 0] > 180) & (pixels[..., 1] < 130) & (pixels[..., 2] < 130)
            assert red.sum() > 20  # the class's boxes, drawn in red
    page = (cards_out / "report.html").read_text()
    assert len(page) < 1_500_000


def test_the_histogram_of_boxes_per_image_draws_each_bin_as_wide_as_the_counts_it_holds():
    svg = report_page.per_image_chart({"0": 10, "1": 40, "6-7": 20, "10-14": 50, "20+": 5})
    root = ET.fromstring(svg)
    bars = {}
    for rect in root.iter("{http://www.w3.org/2000/svg}rect"):
        title = rect.find("{http://www.w3.org/2000/svg}title")
        if title is not None:
            bars[title.text.split(" boxes")[0]] = (float(rect.get("width")) + 1, float(rect.get("height")))
    unit = bars["0"][0]
    assert bars["1"][0] == pytest.approx(unit, abs=0.2)
    assert bars["6-7"][0] == pytest.approx(2 * unit, abs=0.2) and bars["10-14"][0] == pytest.approx(5 * unit, abs=0.2)
    # the height is images per box count: 20 images over 2 counts stand as tall as 10 images in one
    assert bars["6-7"][1] == pytest.approx(bars["0"][1], rel=0.01)
    assert bars["10-14"][1] == pytest.approx(bars["0"][1], rel=0.01)
    assert bars["1"][1] == pytest.approx(4 * bars["0"][1], rel=0.01)
    short = ET.fromstring(report_page.per_image_chart({"0": 30, "1": 40}))
    labels = [t.text for t in short.iter("{http://www.w3.org/2000/svg}text")]
    assert "2" in labels and "3" not in labels  # the axis ends one bin after the last with images


def test_a_version_2_report_still_loads_and_renders_without_the_shape_and_position_charts(cards_out):
    import copy

    from schemas.report import check_stats

    doc = copy.deepcopy(report.load(str(cards_out)).attrs["stats"])
    doc["stats_version"] = 2
    for entry in doc["splits"].values():
        for c in entry["classes"]:
            del c["aspects"], c["positions"]
    check_stats(doc)
    page = report_page.render(doc)
    assert "Box sizes per class" in page and "Box shapes per class" not in page
    doc["stats_version"] = 3
    with pytest.raises(ValueError, match="class entry lacks 'aspects'"):
        check_stats(doc)
