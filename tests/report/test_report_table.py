from rich.console import Console

from automc.report import front_table


def render(table) -> str:
    console = Console(record=True, width=200)
    console.print(table)
    return console.export_text()


def test_columns_and_rows(calibrated):
    _, front = calibrated
    table = front_table(front)
    headers = [c.header for c in table.columns]
    assert headers == ["trial", "accuracy (%)", "latency ms (pred)", "size KiB", "baseline", "config summary"]
    assert table.row_count == len(front)
    text = render(table)
    on_front = set(front["baseline"].dropna()) - {""}
    assert on_front and all(name in text for name in on_front)
    assert "uncal" not in text.lower()


def test_measured_column_when_given(calibrated):
    _, front = calibrated
    first = int(front["trial"].iloc[0])
    table = front_table(front, measured={first: 1.234})
    assert "measured ms" in [c.header for c in table.columns]
    text = render(table)
    assert "1.234" in text and "–" in text


def test_uncalibrated_latencies_are_labelled(uncalibrated):
    _, front = uncalibrated
    text = render(front_table(front))
    assert "(uncal.)" in text and "UNCALIBRATED roofline estimate" in text
