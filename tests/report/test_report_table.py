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


def test_versus_int8_names_the_fastest_point_within_one_point(calibrated):
    from automc.report import versus_int8

    trials, front = calibrated
    fp32 = trials.loc[trials["baseline"] == "fp32", "accuracy"].item()
    int8 = trials[trials["baseline"] == "int8"].iloc[0]
    ok = front[front["accuracy"] >= fp32 - 0.01].sort_values("latency_ms").iloc[0]
    line = versus_int8(trials, front)
    assert line.startswith("fastest at ≤ 1 point loss: ")
    assert f"{ok['latency_ms']:.3f} ms" in line and f"({int8['latency_ms']:.3f} ms" in line
    assert f"{int8['latency_ms'] / ok['latency_ms']:.2f}× uniform int8" in line
    assert versus_int8(trials[trials["baseline"] != "int8"], front) is None
