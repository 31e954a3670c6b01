//! Rich notebook display: rendered charts, tables and the kernel wire format.
//!
//! Charts are checked through their SVG (parsed as XML); one example of each is also written
//! to `target/display-examples/` as SVG and PNG for looking at.

use std::path::PathBuf;

use tunebook::display::{
    display, BarChart, Display, DisplayHandle, DisplayMessage, Heatmap, Histogram, LineChart, MimeBundle, ProgressBar,
    Table,
};

/// First two series colours and the neutral text colour, as plotters writes them in SVG.
const BLUE: &str = "#3B82F6";
const ORANGE: &str = "#F97316";
const GREY: &str = "#808080";

fn parse(svg: &str) -> roxmltree::Document<'_> {
    roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("SVG is not well-formed XML: {e}\n{svg}"))
}

fn texts(doc: &roxmltree::Document) -> Vec<String> {
    doc.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.text()).map(|t| t.trim().to_owned()).collect()
}

fn elements<'a>(doc: &'a roxmltree::Document, tag: &str, attr: &str, value: &str) -> Vec<roxmltree::Node<'a, 'a>> {
    doc.descendants().filter(|n| n.has_tag_name(tag) && n.attribute(attr) == Some(value)).collect()
}

fn examples_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/display-examples");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn loss_chart() -> LineChart {
    let train: Vec<f32> = (0..200)
        .map(|step| 2.8 * (-(step as f32) / 60.0).exp() + 0.9 + 0.05 * ((step * 7919) % 13) as f32 / 13.0)
        .collect();
    LineChart::new("Fine-tuning loss")
        .x_label("step")
        .y_label("loss (nats/token)")
        .series("train", train.iter().enumerate())
        .series("eval", (0..=8).map(|i| (i * 25, 3.4 * (-(i as f64 * 25.0) / 70.0).exp() + 1.05)))
}

#[test]
fn line_chart_svg_has_title_axes_legend_and_every_point() {
    let chart = loss_chart();
    let svg = chart.to_svg().unwrap();
    let doc = parse(&svg);
    let texts = texts(&doc);
    for expected in ["Fine-tuning loss", "step", "loss (nats/token)", "train", "eval"] {
        assert!(texts.iter().any(|t| t == expected), "missing text {expected:?} in {texts:?}");
    }
    let points_in = |color: &str| -> usize {
        elements(&doc, "polyline", "stroke", color)
            .iter()
            .filter(|line| line.attribute("stroke-width") == Some("2"))
            .map(|line| line.attribute("points").unwrap().split_whitespace().count())
            .sum()
    };
    assert_eq!(points_in(BLUE), 200);
    assert_eq!(points_in(ORANGE), 9);
    // Short series get a dot per point; long ones do not.
    assert_eq!(elements(&doc, "circle", "fill", ORANGE).len(), 9);
    assert_eq!(elements(&doc, "circle", "fill", BLUE).len(), 0);
}

#[test]
fn sweep_with_many_series_shows_every_name_or_a_count() {
    let mut chart = LineChart::new("Learning-rate sweep").x_label("step").y_label("loss");
    for run in 0..14 {
        let lr = 1e-5 * 2f64.powi(run);
        for step in 0..30 {
            chart.push(&format!("lr={lr:.1e}"), step, 3.0 / (1.0 + step as f64 * lr * 1e3));
        }
    }
    let svg = chart.to_svg().unwrap();
    let texts = texts(&parse(&svg));
    let named = chart.series_names().iter().filter(|name| texts.iter().any(|t| t == *name)).count();
    let more =
        texts.iter().find_map(|t| t.strip_prefix('+')?.strip_suffix(" more")?.parse::<usize>().ok()).unwrap_or(0);
    assert_eq!(named + more, 14, "{texts:?}");
    chart.save_svg(examples_dir().join("sweep.svg")).unwrap();
}

#[test]
fn log_axis_ticks_are_powers_of_ten() {
    let chart = LineChart::new("LR range test")
        .x_label("learning rate")
        .y_label("loss")
        .log_x()
        .series("loss", (0..60).map(|i| (1e-6 * 10f64.powf(i as f64 / 12.0), 3.0 - (i as f64 / 30.0).sin())));
    let svg = chart.to_svg().unwrap();
    let texts = texts(&parse(&svg));
    for tick in ["1e-6", "1e-5", "1e-4", "0.001", "0.01"] {
        assert!(texts.iter().any(|t| t == tick), "missing tick {tick} in {texts:?}");
    }
}

#[test]
fn histogram_bars_match_non_empty_bins_and_marker_is_labelled() {
    let train: Vec<usize> = (0..500).map(|i| 20 + (i * 37) % 280).collect();
    let test: Vec<usize> = (0..120).map(|i| 30 + (i * 53) % 200).collect();
    let chart = Histogram::new("Prompt length")
        .x_label("length (tokens)")
        .y_label("examples")
        .series("train", &train)
        .series("test", &test)
        .bins(25)
        .marker(256, "max_len = 256");
    let svg = chart.to_svg().unwrap();
    let doc = parse(&svg);
    let texts = texts(&doc);
    for expected in ["Prompt length", "length (tokens)", "examples", "train", "test", "max_len = 256"] {
        assert!(texts.iter().any(|t| t == expected), "missing text {expected:?} in {texts:?}");
    }
    // Bins of 12 tokens from 19.5 (data 20..=299), so every bin has train values; test values
    // 30..=229 fill bins 0..=17. One more rect per colour is its legend swatch.
    assert_eq!(elements(&doc, "rect", "fill", BLUE).len(), 24 + 1);
    assert_eq!(elements(&doc, "rect", "fill", ORANGE).len(), 18 + 1);
    let marker_dashes = doc
        .descendants()
        .filter(|n| (n.has_tag_name("polyline") || n.has_tag_name("line")) && n.attribute("stroke") == Some(GREY))
        .filter(|n| n.attribute("stroke-width") == Some("2"))
        .count();
    assert!(marker_dashes > 3, "the marker should be a dashed line, found {marker_dashes} grey segments");
    let text = chart.mime_bundle().plain;
    assert!(text.contains("train: 500 values") && text.contains("above max_len = 256"), "{text}");
}

#[test]
fn bar_chart_has_one_bar_and_value_per_label() {
    let chart = BarChart::new("Label distribution")
        .x_label("label")
        .y_label("examples")
        .bars([("positive", 812), ("negative", 640), ("neutral", 97), ("mixed", 12)])
        .sort_by_value();
    let svg = chart.to_svg().unwrap();
    let doc = parse(&svg);
    let texts = texts(&doc);
    for expected in
        ["Label distribution", "label", "examples", "positive", "negative", "neutral", "mixed", "812", "97", "12"]
    {
        assert!(texts.iter().any(|t| t == expected), "missing text {expected:?} in {texts:?}");
    }
    assert_eq!(elements(&doc, "rect", "fill", BLUE).len(), 4);
}

#[test]
fn crowded_bar_labels_turn_vertical_and_stay_whole_or_cut() {
    let labels: Vec<String> = (0..30).map(|i| format!("intent_category_{i}")).collect();
    let chart = BarChart::new("Intents").bars(labels.iter().map(|l| (l, l.len())));
    let svg = chart.to_svg().unwrap();
    let doc = parse(&svg);
    let rotated = doc
        .descendants()
        .filter(|n| n.has_tag_name("text") && n.attribute("transform").is_some_and(|t| t.starts_with("rotate(270")))
        .filter(|n| n.text().is_some_and(|t| t.trim().starts_with("intent_category_")))
        .count();
    assert_eq!(rotated, 30);
    chart.save_png(examples_dir().join("bars-crowded.png")).unwrap();
}

#[test]
fn confusion_matrix_writes_counts_in_cells() {
    let labels = ["negative", "neutral", "positive"];
    let counts = [[50, 3, 1], [7, 40, 9], [0, 4, 61]];
    let chart = Heatmap::confusion_matrix("Confusion matrix (test split)", labels, counts).unwrap();
    let svg = chart.to_svg().unwrap();
    let doc = parse(&svg);
    let texts = texts(&doc);
    for expected in ["Confusion matrix (test split)", "predicted", "actual", "negative", "neutral", "positive"] {
        assert_eq!(
            texts.iter().filter(|t| *t == expected).count(),
            if labels.contains(&expected) { 2 } else { 1 },
            "{expected} in {texts:?}"
        );
    }
    for count in counts.iter().flatten() {
        assert!(texts.iter().any(|t| *t == count.to_string()), "count {count} missing in {texts:?}");
    }
    // Eight coloured cells and one empty, outlined cell.
    let filled = doc
        .descendants()
        .filter(|n| n.has_tag_name("rect") && n.attribute("fill").is_some_and(|f| f != "none"))
        .count();
    assert_eq!(filled, 8);
}

#[test]
fn charts_render_to_png_with_transparent_background() {
    let png = loss_chart().to_png().unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let decoder = png::Decoder::new(std::io::Cursor::new(&png));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((info.width, info.height, info.color_type), (760, 420, png::ColorType::Rgba));
    let alphas: Vec<u8> = pixels.chunks_exact(4).map(|p| p[3]).collect();
    assert_eq!(alphas[0], 0, "corner should be transparent");
    assert!(alphas.iter().filter(|a| **a == 255).count() > 1000, "lines and text should be opaque");
}

#[test]
fn html_chart_uses_theme_colour_and_svg_stays_standalone() {
    let bundle = loss_chart().mime_bundle();
    let html = bundle.html.unwrap();
    assert!(
        html.contains("\"currentColor\"") && !html.contains(&format!("\"{GREY}\"")),
        "HTML should follow the theme text colour"
    );
    assert!(html.contains("var(--jp-ui-font-color1"));
    let svg = bundle.svg.unwrap();
    assert!(svg.contains(GREY) && !svg.contains("currentColor"));
    assert!(bundle.plain.contains("train: 200 points"), "{}", bundle.plain);
}

#[test]
fn empty_and_degenerate_charts_still_render() {
    for svg in [
        LineChart::new("nothing yet").to_svg().unwrap(),
        LineChart::new("flat").series("a", [(1, 5.0)]).to_svg().unwrap(),
        LineChart::new("nan").series("a", [(0.0, f64::NAN), (1.0, f64::INFINITY)]).to_svg().unwrap(),
        Histogram::new("none").to_svg().unwrap(),
        Histogram::new("one value").series("a", [3.5, 3.5]).to_svg().unwrap(),
        BarChart::new("no bars").to_svg().unwrap(),
        BarChart::new("zeros").bars([("a", 0), ("b", 0)]).to_svg().unwrap(),
        Heatmap::new("all zero", ["a"], ["b"], [[0]]).unwrap().to_svg().unwrap(),
    ] {
        parse(&svg);
    }
    assert!(LineChart::new("nothing yet").to_svg().unwrap().contains("no data"));
}

#[test]
fn table_escapes_markup_and_truncates_long_cells() {
    let long = format!("{} end", "word ".repeat(40));
    let table = Table::new()
        .column("text", "str")
        .column("label", "i64")
        .row(["<script>alert('x')</script>", "1"])
        .row([long.as_str(), "0"]);
    let html = table.to_html();
    assert!(!html.contains("<script>"));
    assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
    let full = format!("title=\"{long}\"");
    assert!(html.contains(&full), "full text should be in the tooltip");
    assert!(!html.contains(&format!(">{long}<")), "long text should be cut in the cell");
    assert!(html.contains("word word…</td>"));
    assert!(html.contains("<div class=\"tb-dtype\">i64</div>"));
    assert!(!html.contains("background:#fff") && !html.contains("background: white"));
}

#[test]
fn table_shows_head_and_tail_of_long_data() {
    let table = Table::new()
        .title("train split")
        .column("id", "u64")
        .column("text", "str")
        .rows((0..3).map(|i| [i.to_string(), format!("example {i}")]))
        .skipped_rows(9_994)
        .rows((9_997..10_000).map(|i| [i.to_string(), format!("example {i}")]))
        .head_tail(2, 2);
    assert_eq!(table.row_count(), 10_000);
    let html = table.to_html();
    assert!(html.contains("… 9,996 more rows …"), "{html}");
    assert!(html.contains("example 1<") && !html.contains("example 2<") && html.contains("example 9998<"));
    assert!(html.contains("10,000 rows × 2 columns"));
    let text = table.mime_bundle().plain;
    assert!(text.starts_with("train split\n"), "{text}");
    assert!(text.contains("… 9,996 more rows …"), "{text}");
}

#[test]
fn wire_line_round_trips_through_json() {
    let bundle = Table::new().column("a", "").row(["x\ny \"quoted\""]).mime_bundle().with_png(vec![1, 2, 3]);
    let line = bundle.message(Some("tunebook-1"), false).to_line();
    assert_eq!(line.lines().count(), 1);
    let json: serde_json::Value = serde_json::from_str(line.strip_prefix("TUNEBOOK_DISPLAY ").unwrap()).unwrap();
    assert_eq!(json["display_id"], "tunebook-1");
    assert_eq!(json["update"], false);
    assert_eq!(json["data"]["text/plain"], bundle.plain);
    assert_eq!(json["data"]["text/html"], bundle.html.clone().unwrap());
    assert_eq!(json["data"]["image/png"], "AQID");
    let one_off: serde_json::Value = serde_json::from_str(
        MimeBundle::plain("hi").message(None, false).to_line().strip_prefix("TUNEBOOK_DISPLAY ").unwrap(),
    )
    .unwrap();
    assert!(one_off["display_id"].is_null());
}

/// Run by [`kernel_mode_prints_one_protocol_line_per_display`] in a child process.
#[test]
fn emit_displays_for_parent_process() {
    if std::env::var_os("TUNEBOOK_DISPLAY_CHILD").is_none() {
        return;
    }
    display(&MimeBundle::plain("one-off").with_html("<b>one-off</b>"));
    let mut bar = ProgressBar::new(10).label("Training");
    let handle = DisplayHandle::show(&bar);
    bar.set_step(5);
    handle.update(&bar);
    tunebook::display::clear_output();
}

#[test]
fn kernel_mode_prints_one_protocol_line_per_display() {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "emit_displays_for_parent_process", "--nocapture", "--test-threads=1"])
        .env("TUNEBOOK_KERNEL", "1")
        .env("TUNEBOOK_DISPLAY_CHILD", "1")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    // The test harness may print its own text in front of the first line.
    let protocol: Vec<&str> = stdout.lines().filter_map(|line| line.find("TUNEBOOK_").map(|at| &line[at..])).collect();
    assert_eq!(protocol.len(), 4, "{stdout}");
    let messages: Vec<DisplayMessage> =
        protocol[..3].iter().map(|line| DisplayMessage::from_line(line).unwrap()).collect();
    assert_eq!(messages[0].display_id, None);
    assert_eq!(messages[0].data["text/html"], "<b>one-off</b>");
    let id = messages[1].display_id.clone().expect("a handle's display has an id");
    assert_eq!((messages[1].update, messages[2].update), (false, true));
    assert_eq!(messages[2].display_id.as_deref(), Some(id.as_str()));
    assert!(messages[2].data["text/html"].contains("width:50.0%"));
    assert_eq!(protocol[3], r#"TUNEBOOK_CLEAR {"wait": true}"#);
}

#[test]
fn terminal_mode_prints_plain_text() {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "emit_displays_for_parent_process", "--nocapture", "--test-threads=1"])
        .env_remove("TUNEBOOK_KERNEL")
        .env("TUNEBOOK_DISPLAY_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(!stdout.contains("TUNEBOOK_"), "{stdout}");
    assert!(stdout.lines().any(|line| line.ends_with("one-off")), "{stdout}");
    assert!(stdout.contains("Training [###############...............] 50%"), "{stdout}");
}

#[test]
fn evcxr_display_blocks_carry_html() {
    let content = Table::new().column("a", "").row(["1"]).mime_bundle().evcxr_content();
    assert!(content.starts_with("EVCXR_BEGIN_CONTENT text/html\n<div class=\"tunebook-table\">"));
    assert!(content.ends_with("EVCXR_END_CONTENT\n"));
}

#[test]
fn renders_examples_for_inspection() {
    let dir = examples_dir();
    let histogram = Histogram::new("Prompt length per split")
        .x_label("length (tokens)")
        .y_label("examples")
        .series(
            "train",
            (0..800)
                .map(|i| 40.0 + 60.0 * ((i * 37 % 100) as f64 / 100.0) + 150.0 * ((i * 11 % 97) as f64 / 97.0).powi(3)),
        )
        .series("test", (0..200).map(|i| 50.0 + 200.0 * ((i * 13 % 89) as f64 / 89.0).powi(2)))
        .marker(256, "max_len = 256");
    let bars = BarChart::new("Label distribution")
        .x_label("label")
        .y_label("examples")
        .bars([("greetings", 120), ("food", 95), ("computers", 310), ("science", 48), ("history", 77), ("emotion", 12)])
        .sort_by_value();
    let heatmap = Heatmap::confusion_matrix(
        "Confusion matrix",
        ["negative", "neutral", "positive"],
        [[50, 3, 1], [7, 40, 9], [0, 4, 61]],
    )
    .unwrap();
    let lr = LineChart::new("Learning-rate schedule").x_label("step").y_label("learning rate").series(
        "cosine with warmup",
        (0..300).map(|s| {
            (
                s,
                if s < 30 {
                    3e-4 * s as f64 / 30.0
                } else {
                    1.5e-4 * (1.0 + (std::f64::consts::PI * (s - 30) as f64 / 270.0).cos())
                },
            )
        }),
    );
    let loss = loss_chart();
    for (name, svg, png) in [
        ("loss", loss.to_svg(), loss.to_png()),
        ("lr", lr.to_svg(), lr.to_png()),
        ("histogram", histogram.to_svg(), histogram.to_png()),
        ("bars", bars.to_svg(), bars.to_png()),
        ("heatmap", heatmap.to_svg(), heatmap.to_png()),
    ] {
        let svg = svg.unwrap();
        parse(&svg);
        std::fs::write(dir.join(format!("{name}.svg")), &svg).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png.unwrap()).unwrap();
    }
    let mut bar = ProgressBar::new(1200).label("Training");
    bar.set_step(420)
        .set_epoch(2, 3)
        .add_tokens(1_720_000)
        .set_elapsed(std::time::Duration::from_secs(151))
        .set_metric("loss", 1.234)
        .set_metric("lr", 2.5e-4);
    let table = Table::new()
        .title("train split")
        .column("question", "str")
        .column("answer", "str")
        .column("tokens", "i64")
        .rows((0..3).map(|i| {
            [
                format!("What is {i} + {i}? <b>bold?</b>"),
                format!("It is {}.\nAnything else?", 2 * i),
                (12 + i).to_string(),
            ]
        }))
        .row(["A very long question that goes on and on ".repeat(4), "short".to_owned(), "60".to_owned()])
        .skipped_rows(5_000)
        .rows((0..2).map(|i| [format!("last {i}"), "…".to_owned(), "9".to_owned()]));
    let page = format!(
        "<html><body style=\"font-family:sans-serif\">{}{}{}{}</body></html>",
        table.to_html(),
        bar.to_html(),
        loss.mime_bundle().html.unwrap(),
        heatmap.mime_bundle().html.unwrap()
    );
    std::fs::write(dir.join("page.html"), page).unwrap();
}
