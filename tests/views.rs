//! What a notebook user sees of tunebook's own values: datasets, reports, model and
//! parameter summaries, evaluations and training results as tables, their charts, and the
//! live loss chart of a training run in the notebook kernel.

use std::path::Path;
use std::time::Duration;

use tch::{Device, Kind, Tensor};
use tunebook::data::{CleanOptions, Dataset, Example, SplitOptions, TokenStats, TokenizeOptions};
use tunebook::display::{compare_generations, Display, DisplayMessage};
use tunebook::models::{LoadOptions, Task};
use tunebook::nn::Module;
use tunebook::peft::LoraConfig;
use tunebook::train::{ClassificationReport, Event, IntervalStrategy, Sweep, TokenRows, Trainer, TrainingArgs};
use tunebook::{Model, Tokenizer};

/// The first series colour as plotters writes it in SVG.
const BLUE: &str = "#3B82F6";
const VOCAB: i64 = 32;
const HIDDEN: i64 = 16;

fn parse(svg: &str) -> roxmltree::Document<'_> {
    roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("SVG is not well-formed XML: {e}\n{svg}"))
}

fn svg_texts(svg: &str) -> Vec<String> {
    let doc = parse(svg);
    doc.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.text()).map(|t| t.trim().to_owned()).collect()
}

/// How many `tag` elements of the SVG have `fill="color"`.
fn filled(svg: &str, tag: &str, color: &str) -> usize {
    parse(svg).descendants().filter(|n| n.has_tag_name(tag) && n.attribute("fill") == Some(color)).count()
}

/// Where charts are also written as PNG, for looking at (as tests/display.rs does).
fn save_example(name: &str, png: tunebook::Result<Vec<u8>>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/display-examples");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("views-{name}.png")), png.unwrap()).unwrap();
}

fn html_of(value: &impl Display) -> String {
    value.mime_bundle().html.expect("an HTML form")
}

/// A random one-layer Llama (HF layout) written to `dir` and loaded fully trainable.
fn tiny_model(dir: &Path) -> Model {
    if !dir.join("config.json").exists() {
        tch::manual_seed(5);
        let random = |out: i64, inp: i64| Tensor::randn([out, inp], (Kind::Float, Device::Cpu)) * 0.1;
        let ones = || Tensor::ones([HIDDEN], (Kind::Float, Device::Cpu));
        let mut tensors = vec![
            ("model.embed_tokens.weight".to_owned(), random(VOCAB, HIDDEN)),
            ("lm_head.weight".to_owned(), random(VOCAB, HIDDEN)),
            ("model.norm.weight".to_owned(), ones()),
            ("model.layers.0.input_layernorm.weight".to_owned(), ones()),
            ("model.layers.0.post_attention_layernorm.weight".to_owned(), ones()),
        ];
        let linears = [("self_attn.q_proj", 16, 16), ("self_attn.k_proj", 8, 16), ("self_attn.v_proj", 8, 16), ("self_attn.o_proj", 16, 16), ("mlp.gate_proj", 32, 16), ("mlp.up_proj", 32, 16), ("mlp.down_proj", 16, 32)];
        for (name, out, inp) in linears {
            tensors.push((format!("model.layers.0.{name}.weight"), random(out, inp)));
        }
        std::fs::create_dir_all(dir).unwrap();
        Tensor::write_safetensors(&tensors, dir.join("model.safetensors")).unwrap();
        let config = serde_json::json!({
            "model_type": "llama", "vocab_size": VOCAB, "hidden_size": HIDDEN, "intermediate_size": 32,
            "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
            "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "tie_word_embeddings": false, "pad_token_id": 0
        });
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    }
    let options = LoadOptions::default().device(Device::Cpu).kind(Kind::Float).task(Task::CausalLm);
    let model = Model::from_pretrained_with(dir.to_str().unwrap(), options).unwrap();
    for (_, t) in model.named_parameters() {
        let _ = t.set_requires_grad(true);
    }
    model
}

/// Counting sequences: learnable, so the loss goes down.
fn counting_rows() -> TokenRows {
    TokenRows::causal_texts((0..8).map(|r| (0..10).map(|i| 1 + (r + i) % (VOCAB - 1)).collect()).collect(), 0).unwrap()
}

fn quick_args(dir: &Path, steps: i64) -> TrainingArgs {
    TrainingArgs {
        learning_rate: 1e-2,
        max_steps: steps,
        per_device_train_batch_size: 4,
        logging_steps: 1,
        eval_strategy: IntervalStrategy::Steps,
        eval_steps: Some(4),
        save_strategy: IntervalStrategy::No,
        ..TrainingArgs::new(dir)
    }
}

fn qa_rows(count: usize) -> Vec<serde_json::Value> {
    (0..count)
        .map(|i| {
            let prompt = if i == 2 { format!("A long question: {}?", "why ".repeat(60)) } else { format!("Question {i}?") };
            serde_json::json!({"prompt": prompt, "response": format!("Answer {i}.")})
        })
        .collect()
}

#[test]
fn dataset_shows_head_and_tail_rows_the_total_and_cut_long_cells() {
    let data = Dataset::from_rows(qa_rows(30)).unwrap();
    let bundle = data.mime_bundle();
    let html = bundle.html.unwrap();
    for shown in ["Question 0?", "Question 4?", "Answer 25.", "Question 29?", "Answer 29."] {
        assert!(html.contains(shown), "{shown} missing from the preview");
    }
    assert!(!html.contains("Question 15?"), "the middle is left out");
    assert!(html.contains("… 20 more rows …"), "{html}");
    assert!(html.contains("30 rows × 2 columns"), "the total row count is shown");
    for column in ["prompt", "response"] {
        assert!(html.contains(&format!("<th>{column}<div class=\"tb-dtype\">str</div>")), "column {column}");
    }
    let long = format!("A long question: {}?", "why ".repeat(60));
    let tooltip = format!("title=\"{long}\">");
    let at = html.find(&tooltip).expect("the full text is in the cell's tooltip") + tooltip.len();
    let shown = &html[at..at + html[at..].find("</td>").unwrap()];
    assert!(shown.starts_with("A long question: why") && shown.ends_with('…'), "cut with an ellipsis: {shown}");
    assert!(shown.chars().count() <= 80, "{shown}");
    assert!(bundle.plain.contains("Question 29?") && bundle.plain.contains("30 rows"), "{}", bundle.plain);
    assert!(bundle.plain.starts_with("rows (chat data)"), "{}", bundle.plain);
}

fn sentiment() -> Dataset {
    let labels = [("positive", 7), ("negative", 4), ("neutral", 2)];
    let examples = labels
        .iter()
        .flat_map(|(label, n)| (0..*n).map(move |i| Example::labeled(format!("{label} review number {i}"), label)))
        .collect();
    Dataset::from_examples(examples).unwrap()
}

#[test]
fn classification_data_shows_labels_and_charts_one_bar_per_class() {
    let data = sentiment();
    let html = html_of(&data);
    assert!(html.contains("classification data, 3 classes"), "{html}");
    assert!(html.contains("<td>positive review number 0</td><td>positive</td>"), "{html}");

    let svg = data.label_chart().to_svg().unwrap();
    let texts = svg_texts(&svg);
    for expected in ["negative", "neutral", "positive", "7", "4", "2", "label", "examples"] {
        assert!(texts.iter().any(|t| t == expected), "missing {expected:?} in {texts:?}");
    }
    assert_eq!(filled(&svg, "rect", BLUE), 3, "one bar per class");
    save_example("labels", data.label_chart().to_png());
}

#[test]
fn label_chart_of_unlabelled_data_is_empty_and_says_why() {
    let data = Dataset::from_rows(qa_rows(3)).unwrap();
    let svg = data.label_chart().to_svg().unwrap();
    assert_eq!(filled(&svg, "rect", BLUE), 0);
    assert!(svg_texts(&svg).iter().any(|t| t.contains("none (chat data)")), "{svg}");
}

#[test]
fn cleaning_report_and_splits_are_tables() {
    let mut rows = qa_rows(20);
    rows.push(rows[3].clone());
    rows.push(serde_json::json!({"prompt": "Anyone there?", "response": "   "}));
    let data = Dataset::from_rows(rows).unwrap();
    let (clean, report) = data.clean(&CleanOptions::default()).unwrap();
    let html = html_of(&report);
    assert!(html.contains("22 rows in, 20 out (2 removed)"), "{html}");
    assert!(html.contains("<td>exact duplicates</td><td class=\"tb-num\">1</td>"), "{html}");
    assert!(html.contains("row 22"), "the removed empty row is named: {html}");
    assert_eq!(report.mime_bundle().plain, report.to_string(), "a terminal gets the usual report");

    let splits = clean.split(&SplitOptions::new(0.8, 0.1, 0.1)).unwrap();
    let html = html_of(&splits);
    for row in ["<td>train</td><td class=\"tb-num\">16</td>", "<td>validation</td><td class=\"tb-num\">2</td>"] {
        assert!(html.contains(row), "{row} in {html}");
    }
    assert!(html.contains("Splits of 20 examples") && html.contains("80.0%"), "{html}");
}

#[test]
fn token_statistics_table_and_length_histogram_mark_the_truncation_limit() {
    let tokenizer = Tokenizer::from_hf_dir(&tunebook_tests::minilm_dir()).unwrap();
    let texts = (0..40).map(|i| Example::text(format!("word {}", "more ".repeat(i % 20))));
    let data = Dataset::from_examples(texts.collect()).unwrap();
    let tokens = data.tokenize(&tokenizer, &TokenizeOptions::default().max_len(16)).unwrap();
    let stats = tokens.stats();
    assert!(stats.truncated > 0, "some texts are longer than 16 tokens");

    let html = html_of(&stats);
    for column in ["examples", "tokens", "mean", "median", "p95", "max", "truncated", "tokens / epoch"] {
        assert!(html.contains(&format!("<th class=\"tb-num\">{column}<")), "column {column} in {html}");
    }
    assert!(html.contains(&format!("{} ({} tokens cut)", stats.truncated, stats.truncated_tokens)), "{html}");
    assert_eq!(html_of(&tokens), html, "a tokenized dataset shows its statistics");
    let both = TokenStats::table([&stats, &stats]);
    assert_eq!(both.row_count(), 2);

    let chart = tokens.length_histogram();
    let svg = chart.to_svg().unwrap();
    let texts = svg_texts(&svg);
    for expected in ["max_len = 16", "tokens per example", "examples"] {
        assert!(texts.iter().any(|t| t == expected), "missing {expected:?} in {texts:?}");
    }
    assert!(texts.iter().any(|t| t.starts_with("Example lengths")), "title in {texts:?}");
    save_example("lengths", chart.to_png());
    let above = format!("{} above max_len = 16", stats.truncated);
    assert!(chart.mime_bundle().plain.contains(&above), "lengths before truncation: {}", chart.mime_bundle().plain);
}

#[test]
fn classification_report_shows_per_class_scores_and_a_named_confusion_heatmap() {
    let report = ClassificationReport::new(&[0, 0, 1, 1, 2, 0], &[0, 0, 1, 2, 2, 2], 3)
        .with_class_names(["negative", "neutral", "positive"])
        .unwrap();
    let html = html_of(&report);
    // negative: precision 2/3, recall 1; neutral: 1/2, 1; positive: 1, 1/3.
    assert!(html.contains("<td>negative</td><td class=\"tb-num\">0.6667</td><td class=\"tb-num\">1.000</td><td class=\"tb-num\">0.8000</td><td class=\"tb-num\">2</td>"), "{html}");
    assert!(html.contains("<td>positive</td><td class=\"tb-num\">1.000</td><td class=\"tb-num\">0.3333</td>"), "{html}");
    assert!(html.contains("macro avg") && html.contains("accuracy 0.6667"), "{html}");

    let svg = report.confusion_heatmap().to_svg().unwrap();
    let texts = svg_texts(&svg);
    for name in ["negative", "neutral", "positive"] {
        assert_eq!(texts.iter().filter(|t| *t == name).count(), 2, "{name} on both axes: {texts:?}");
    }
    for axis in ["predicted", "true"] {
        assert!(texts.iter().any(|t| t == axis), "axis {axis} in {texts:?}");
    }
    save_example("confusion", report.confusion_heatmap().to_png());
}

#[test]
fn generations_compare_side_by_side_in_full() {
    let long = format!("A detailed answer {}", "and more ".repeat(30));
    let table = compare_generations(&["Q1", "Q2"], &["old 1".to_owned(), "old 2".to_owned()], std::slice::from_ref(&long));
    let html = table.to_html();
    assert!(html.contains("<th>prompt<") && html.contains("<th>before<") && html.contains("<th>after<"));
    assert!(html.contains(&format!("<td>{long}</td>")), "generations are not cut");
    assert!(html.contains("<td>Q2</td><td>old 2</td><td></td>"), "a missing generation is an empty cell: {html}");
}

#[test]
fn model_summary_and_lora_parameters_are_tables() {
    let tmp = tempfile::tempdir().unwrap();
    let mut model = tiny_model(&tmp.path().join("llama"));
    let total: i64 = model.named_parameters().iter().map(|(_, t)| t.numel() as i64).sum();
    assert_eq!(total, 3376);
    let summary = html_of(&model.summary());
    assert!(summary.contains("<td>llama</td><td>causal LM</td>"), "{summary}");
    assert!(summary.contains("<td class=\"tb-num\">3,376</td>"), "{summary}");
    assert!(summary.contains("3,376 (100.00%)") && summary.contains("float32") && summary.contains(">cpu<") && summary.contains("13.2 KiB"), "{summary}");

    let trainable = LoraConfig::new(4).targets(["q_proj", "v_proj"]).apply(&mut model).unwrap();
    let html = html_of(&trainable);
    assert!(html.contains("trainable params: 224 || all params:"), "{html}");
    assert!(html.contains("<td>model.layers.0.self_attn.q_proj.lora_A.weight</td><td>[4, 16]</td>"), "{html}");
    assert!(!html.contains("mlp"), "frozen weights are not listed");
    let text = trainable.mime_bundle().plain;
    assert!(text.contains("model.layers.0.self_attn.v_proj.lora_B.weight"), "whole names in the text form: {text}");
}

#[test]
fn training_summary_evaluation_and_sweep_show_results_and_curves() {
    let tmp = tempfile::tempdir().unwrap();
    let llama = tmp.path().join("llama");
    let mut trainer =
        Trainer::new(tiny_model(&llama), quick_args(&tmp.path().join("run"), 8)).train_data(counting_rows()).eval_data(counting_rows());
    let summary = trainer.train().unwrap();
    let table = html_of(&summary);
    for figure in ["<th class=\"tb-num\">steps<", "<td class=\"tb-num\">8</td>", "<td>done</td>", "train_loss", "eval_loss"] {
        assert!(table.contains(figure), "{figure} in {table}");
    }
    let chart = summary.loss_chart();
    assert_eq!(chart.series_names(), ["train loss", "eval loss"]);
    assert_eq!(chart.points("train loss").unwrap().len(), 8);
    assert_eq!(chart.points("eval loss").unwrap(), [(4.0, summary.eval_history[0].1["eval_loss"]), (8.0, summary.eval_history[1].1["eval_loss"])]);
    assert!(svg_texts(&chart.to_svg().unwrap()).iter().any(|t| t == "loss (nats)"));
    save_example("loss", chart.to_png());
    assert_eq!(summary.metric_chart("token_accuracy").points("eval_token_accuracy").unwrap().len(), 2);

    let evaluation = trainer.evaluate().unwrap();
    let table = html_of(&evaluation);
    for metric in ["eval_loss", "eval_perplexity", "eval_token_accuracy"] {
        assert!(table.contains(&format!("<th class=\"tb-num\">{metric}<")), "{metric} in {table}");
    }
    assert_eq!(evaluation.mime_bundle().plain.lines().count(), 5, "title, header, types, one row, size");

    let results = Sweep::grid(quick_args(&tmp.path().join("sweep"), 4))
        .vary("learning_rate", [1e-3, 1e-2])
        .run("eval_loss", |args, _| Ok(Trainer::new(tiny_model(&llama), args).train_data(counting_rows()).eval_data(counting_rows())))
        .unwrap();
    assert!(html_of(&results).contains("Sweep by eval_loss"));
    let curves = results.curves();
    let mut names = curves.series_names();
    names.sort();
    assert_eq!(names, ["learning_rate=0.001", "learning_rate=0.01"]);
    assert!(names.iter().all(|name| curves.points(name).unwrap().len() == 4));
    let texts = svg_texts(&curves.to_svg().unwrap());
    assert!(texts.iter().any(|t| t == "learning_rate=0.01"), "legend names the trial: {texts:?}");
    save_example("sweep", curves.to_png());
}

const CHILD: &str = "TUNEBOOK_VIEWS_CHILD";
const RESULT: &str = "CHILD_RESULT ";

/// Run by [`training_in_a_notebook_draws_one_live_loss_chart`] in a child process with
/// `TUNEBOOK_KERNEL=1` (the variable is process-wide).
#[test]
fn train_for_parent_process() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut trainer = Trainer::new(tiny_model(&tmp.path().join("llama")), quick_args(&tmp.path().join("run"), 12))
        .train_data(counting_rows())
        .eval_data(counting_rows());
    // Steps as slow as a small real model's, so the chart's redraw interval comes into play.
    trainer.on_event(|event| {
        if matches!(event, Event::Step { .. }) {
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let summary = trainer.train().unwrap();
    let expected = serde_json::json!({"chart": summary.loss_chart().mime_bundle().plain, "seconds": summary.seconds});
    println!("{RESULT}{expected}");
}

#[test]
fn training_in_a_notebook_draws_one_live_loss_chart() {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "train_for_parent_process", "--nocapture", "--test-threads=1"])
        .env("TUNEBOOK_KERNEL", "1")
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    // The test harness may print its own text in front of a line.
    let tail = |prefix: &str| -> Vec<&str> { stdout.lines().filter_map(|line| line.find(prefix).map(|at| &line[at..])).collect() };
    let messages: Vec<DisplayMessage> = tail("TUNEBOOK_DISPLAY ").iter().filter_map(|line| DisplayMessage::from_line(line)).collect();
    let (charts, bars): (Vec<&DisplayMessage>, Vec<&DisplayMessage>) =
        messages.iter().partition(|m| m.data.contains_key("image/svg+xml"));

    let chart_id = charts[0].display_id.clone().expect("the live chart can be updated");
    assert!(charts.iter().all(|m| m.display_id.as_deref() == Some(chart_id.as_str())), "one chart output, updated in place");
    assert_eq!(charts.iter().filter(|m| !m.update).count(), 1, "shown once");
    assert!(!charts[0].update);
    let expected: serde_json::Value = serde_json::from_str(tail(RESULT)[0].strip_prefix(RESULT).unwrap()).unwrap();
    // At most one redraw per half second (however slow the machine), plus the final one.
    let updates = charts.len() - 1;
    let seconds = expected["seconds"].as_f64().unwrap();
    assert!(updates >= 1 && updates as f64 <= seconds / 0.5 + 2.0, "{updates} updates in {seconds:.2} s");
    assert!(bars.iter().all(|m| m.display_id.is_some() && m.display_id.as_deref() != Some(chart_id.as_str())));
    assert!(bars.last().unwrap().data["text/html"].contains("step 12/12"));

    let last = charts.last().unwrap();
    let expected = expected["chart"].as_str().unwrap();
    assert_eq!(last.data["text/plain"], expected, "the final picture is the summary's loss chart");
    assert!(expected.contains("train loss: 12 points, last (12.00, ") && expected.contains("eval loss: 3 points"), "{expected}");
    let svg = &last.data["image/svg+xml"];
    assert_eq!(filled(svg, "circle", BLUE), 12, "a dot for every step's loss");
    assert!(svg_texts(svg).iter().any(|t| t == "Training loss"));
}
