//! The data pipeline on real files: every format, every bad input, cleaning, splitting,
//! tokenization against transformers, packing, batching, saving, and the shipped sets.
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tunebook::data::*;
use tunebook::loss::IGNORE_INDEX;
use tunebook::{ChatMessage, Tokenizer};
use tunebook_tests::{minilm_dir, run_python, workspace};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn error_of<T: std::fmt::Debug>(result: tunebook::Result<T>) -> String {
    result.expect_err("expected an error").to_string()
}

fn smollm2() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| tunebook::Model::from_pretrained("smollm2-135m-instruct").unwrap().tokenizer().unwrap().clone())
}

fn minilm() -> Tokenizer {
    Tokenizer::from_hf_dir(&minilm_dir()).unwrap()
}

const PAIRS_JSONL: &str = r#"{"prompt": "What are the common symptoms of the flu?", "response": "Fever, cough and aches."}
{"prompt": "What is the capital of France?", "response": "Paris."}
"#;

#[test]
fn every_format_loads_to_the_same_examples() {
    let dir = tempfile::tempdir().unwrap();
    let expected = vec![
        Example::pair("What are the common symptoms of the flu?", "Fever, cough and aches."),
        Example::pair("What is the capital of France?", "Paris."),
    ];
    let jsonl = write(dir.path(), "pairs.jsonl", PAIRS_JSONL);
    let json = write(
        dir.path(),
        "pairs.json",
        r#"[{"prompt": "What are the common symptoms of the flu?", "response": "Fever, cough and aches."},
            {"prompt": "What is the capital of France?", "response": "Paris."}]"#,
    );
    let csv = write(dir.path(), "pairs.csv", "prompt,response\n\"What are the common symptoms of the flu?\",\"Fever, cough and aches.\"\nWhat is the capital of France?,Paris.\n");
    let tsv = write(dir.path(), "pairs.tsv", "prompt\tresponse\nWhat are the common symptoms of the flu?\tFever, cough and aches.\nWhat is the capital of France?\tParis.\n");
    for path in [&jsonl, &json, &csv, &tsv] {
        let data = Dataset::load(path).unwrap();
        assert_eq!(data.kind(), DataKind::Chat, "{}", path.display());
        assert_eq!(data.examples(), expected.as_slice(), "{}", path.display());
    }
    let parquet = dir.path().join("pairs.parquet");
    Dataset::load(&jsonl).unwrap().save(&parquet).unwrap();
    assert_eq!(Dataset::load(&parquet).unwrap().examples(), expected.as_slice());

    // Origins name the line (JSON Lines), the item (JSON arrays) or the row (CSV).
    assert_eq!(Dataset::load(&jsonl).unwrap().origin(1), format!("{}:2", jsonl.display()));
    assert_eq!(Dataset::load(&json).unwrap().origin(1), format!("{} item 2", json.display()));
    assert_eq!(Dataset::load(&csv).unwrap().origin(0), format!("{} row 1", csv.display()));

    // A .json file holding one object per line is read as JSON Lines; formats can be forced.
    let misnamed = write(dir.path(), "lines.json", PAIRS_JSONL);
    assert_eq!(Dataset::load(&misnamed).unwrap().len(), 2);
    let no_extension = write(dir.path(), "pairs.data", PAIRS_JSONL);
    assert!(error_of(Dataset::load(&no_extension)).contains("unknown data file extension"));
    assert_eq!(Dataset::load_with(&no_extension, LoadOptions::new().format(Format::Jsonl)).unwrap().len(), 2);
}

#[test]
fn folders_and_globs_load_every_matching_file_in_order() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "b.jsonl", r#"{"text": "second file"}"#);
    write(dir.path(), "a.jsonl", "{\"text\": \"first file\"}\n{\"text\": \"first file, line 2\"}\n");
    write(dir.path(), "notes.md", "not data");
    let folder = Dataset::load(dir.path()).unwrap();
    assert_eq!(folder.kind(), DataKind::Text);
    assert_eq!(folder.examples().iter().map(|e| e.texts()[0].to_string()).collect::<Vec<_>>(), ["first file", "first file, line 2", "second file"]);
    let glob = Dataset::load(dir.path().join("b*.jsonl")).unwrap();
    assert_eq!(glob.len(), 1);
    assert!(error_of(Dataset::load(dir.path().join("z*.jsonl"))).contains("no files match"));
    // limit stops reading early, across files.
    assert_eq!(Dataset::load_with(dir.path(), LoadOptions::new().limit(2)).unwrap().len(), 2);
}

#[test]
fn schemas_are_detected_and_mapped_to_one_form() {
    let dir = tempfile::tempdir().unwrap();
    let alpaca = write(
        dir.path(),
        "alpaca.jsonl",
        "{\"instruction\": \"Translate to French\", \"input\": \"Good morning\", \"output\": \"Bonjour\"}\n{\"instruction\": \"Name a colour\", \"input\": \"\", \"output\": \"Blue\"}\n",
    );
    assert_eq!(
        Dataset::load(&alpaca).unwrap().examples(),
        [Example::pair("Translate to French\n\nGood morning", "Bonjour"), Example::pair("Name a colour", "Blue")]
    );
    let sharegpt = write(
        dir.path(),
        "sharegpt.jsonl",
        r#"{"conversations": [{"from": "system", "value": "Be kind."}, {"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]}"#,
    );
    assert_eq!(
        Dataset::load(&sharegpt).unwrap().examples(),
        [Example::chat(vec![ChatMessage::system("Be kind."), ChatMessage::user("Hi"), ChatMessage::assistant("Hello!")])]
    );
    let messages = write(dir.path(), "messages.jsonl", r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}"#);
    assert_eq!(Dataset::load(&messages).unwrap().examples(), [Example::pair("Hi", "Hello!")]);

    // Integer labels keep numeric order; string labels are sorted.
    let ints = write(dir.path(), "ints.jsonl", "{\"text\": \"a\", \"label\": 10}\n{\"text\": \"b\", \"label\": 2}\n{\"text\": \"c\", \"label\": \"2\"}\n");
    let ints = Dataset::load(&ints).unwrap();
    assert_eq!(ints.kind(), DataKind::Classification);
    assert_eq!(ints.labels().unwrap().names(), ["2", "10"]);
    assert_eq!(ints.label_counts(), vec![("2".to_string(), 2), ("10".to_string(), 1)]);

    // Declared schema and label map: integer labels name classes by position.
    let reviews = write(dir.path(), "reviews.csv", "review,stars\nloved it,1\nhated it,0\n");
    let declared = Dataset::load_with(
        &reviews,
        LoadOptions::new().schema(Schema::classification("review", "stars")).labels(LabelMap::new(["negative", "positive"])),
    )
    .unwrap();
    assert_eq!(declared.examples(), [Example::labeled("loved it", "positive"), Example::labeled("hated it", "negative")]);
}

#[derive(serde::Serialize)]
struct Review {
    text: String,
    label: u8,
}

#[test]
fn rows_built_in_code_load_like_files() {
    let rows = vec![Review { text: "great".into(), label: 1 }, Review { text: "awful".into(), label: 0 }];
    let data = Dataset::from_rows(&rows).unwrap();
    assert_eq!(data.kind(), DataKind::Classification);
    assert_eq!(data.examples(), [Example::labeled("great", 1), Example::labeled("awful", 0)]);
    let values = vec![serde_json::json!({"prompt": "Hi", "response": "Hello"}), serde_json::json!({"prompt": 3, "response": "x"})];
    let message = error_of(Dataset::from_rows(&values));
    assert!(message.contains("row 2") && message.contains("field `prompt`") && message.contains("number 3"), "{message}");
    let mixed = error_of(Dataset::from_examples(vec![Example::text("a"), Example::pair("b", "c")]));
    assert!(mixed.contains("example 2"), "{mixed}");
}

#[test]
fn bad_input_names_the_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let broken = write(dir.path(), "broken.jsonl", "{\"prompt\": \"a\", \"response\": \"b\"}\n\n{\"prompt\": \"c\", \"response\": \"d\"\n");
    let message = error_of(Dataset::load(&broken));
    assert!(message.contains(&format!("{}:3", broken.display())) && message.contains("invalid JSON") && message.contains("EOF"), "{message}");

    let array = write(dir.path(), "broken.json", "[\n  {\"prompt\": \"a\", \"response\": \"b\"},\n  {\"prompt\": \"c\" \"response\": \"d\"}\n]");
    let message = error_of(Dataset::load(&array));
    assert!(message.contains(&format!("{}:3", array.display())) && message.contains("line 3 column"), "{message}");

    let not_object = write(dir.path(), "list.jsonl", "[1, 2]\n");
    assert!(error_of(Dataset::load(&not_object)).contains("expected a JSON object per line, found a list of 2 items"));

    let columns = write(dir.path(), "columns.jsonl", r#"{"question": "a", "reply": "b"}"#);
    let message = error_of(Dataset::load(&columns));
    assert!(message.contains("columns found: question, reply"), "{message}");
    let declared = error_of(Dataset::load_with(&columns, LoadOptions::new().schema(Schema::pairs("question", "answer"))));
    assert!(declared.contains("missing column `answer`") && declared.contains("columns found: question, reply"), "{declared}");
    let csv_columns = write(dir.path(), "columns.csv", "question,reply\na,b\n");
    assert!(error_of(Dataset::load(&csv_columns)).contains("columns found: question, reply"));

    let later_row = write(dir.path(), "later.jsonl", "{\"prompt\": \"a\", \"response\": \"b\"}\n{\"prompt\": \"c\", \"answer\": \"d\"}\n");
    let message = error_of(Dataset::load(&later_row));
    assert!(message.contains(&format!("{}:2", later_row.display())) && message.contains("missing field `response`") && message.contains("fields found: answer, prompt"), "{message}");

    let types = write(dir.path(), "types.jsonl", "{\"text\": \"fine\", \"label\": 1}\n{\"text\": \"odd\", \"label\": 1.5}\n");
    let message = error_of(Dataset::load(&types));
    assert!(message.contains(&format!("{}:2", types.display())) && message.contains("field `label`") && message.contains("number 1.5"), "{message}");

    let roles = write(dir.path(), "roles.jsonl", r#"{"messages": [{"role": "user", "content": "hi"}, {"role": "narrator", "content": "..."}]}"#);
    let message = error_of(Dataset::load(&roles));
    assert!(message.contains("field `messages`[1]") && message.contains("unknown role `narrator`"), "{message}");

    let empty = write(dir.path(), "empty.jsonl", "\n");
    assert!(error_of(Dataset::load(&empty)).contains("no rows"));
    assert!(error_of(Dataset::load(dir.path().join("missing.jsonl"))).contains("no such file"));
    let latin1 = dir.path().join("latin1.jsonl");
    std::fs::write(&latin1, b"{\"text\": \"caf\xe9\"}\n").unwrap();
    assert!(error_of(Dataset::load(&latin1)).contains(&format!("{}:1: not valid UTF-8", latin1.display())));
}

#[test]
fn parquet_files_written_by_pyarrow_load_with_type_checks() {
    let dir = tempfile::tempdir().unwrap();
    run_python("data_reference.py", &["fixtures", dir.path().to_str().unwrap()]);
    let chat = Dataset::load(dir.path().join("chat.parquet")).unwrap();
    assert_eq!(
        chat.examples(),
        [
            Example::pair("Hi there", "Hello! How can I help?"),
            Example::chat(vec![ChatMessage::system("Be brief."), ChatMessage::user("Capital of Italy?"), ChatMessage::assistant("Rome.")]),
        ]
    );
    let labels = Dataset::load(dir.path().join("labels.parquet")).unwrap();
    assert_eq!(labels.labels().unwrap().names(), ["0", "1", "2"]);
    assert_eq!(labels.origin(2), format!("{} row 3", dir.path().join("labels.parquet").display()));
    let message = error_of(Dataset::load(dir.path().join("float_labels.parquet")));
    assert!(message.contains("row 1") && message.contains("field `label`") && message.contains("number 1.0"), "{message}");
}

#[test]
fn unknown_labels_in_validation_data_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let train = Dataset::load(write(dir.path(), "train.jsonl", "{\"text\": \"good\", \"label\": \"pos\"}\n{\"text\": \"bad\", \"label\": \"neg\"}\n")).unwrap();
    let validation = write(dir.path(), "validation.jsonl", "{\"text\": \"fine\", \"label\": \"pos\"}\n{\"text\": \"meh\", \"label\": \"neutral\"}\n");
    let message = error_of(Dataset::load_with(&validation, LoadOptions::new().labels(train.labels().unwrap().clone())));
    assert!(message.contains(&format!("{}:2", validation.display())) && message.contains("unknown label `neutral`") && message.contains("known labels: neg, pos"), "{message}");
}

#[test]
fn cleaning_reports_every_step_with_examples() {
    let rows = serde_json::json!([
        {"prompt": "Cafe\u{301} prices?", "response": "About 3 euros."},
        {"prompt": "What is Rust?", "response": "A  systems\tlanguage.  \r\nFast."},
        {"prompt": "", "response": "orphan answer"},
        {"prompt": "What is Rust?", "response": "A systems language.\nFast."},
        {"prompt": "what is rust", "response": "a systems language fast"},
        {"prompt": "Tell me everything.", "response": "x".repeat(300)},
        {"prompt": "Hi", "response": "Hello"},
    ]);
    let data = Dataset::from_rows(rows.as_array().unwrap()).unwrap();
    let (clean, report) = data.clean(&CleanOptions::default().max_chars(200)).unwrap();
    assert_eq!((report.rows_in, report.rows_out), (7, 3));
    let step = |name: &str| report.step(name).unwrap_or_else(|| panic!("no step {name} in {report}"));
    assert_eq!(step("unicode NFC").changed, 1);
    assert!(step("unicode NFC").examples[0].starts_with("row 1:"), "{report}");
    assert_eq!(step("whitespace").changed, 1);
    assert_eq!(step("empty").removed, 1);
    assert!(step("empty").examples[0].contains("row 3: empty user message"), "{report}");
    assert_eq!(step("exact duplicates").removed, 1);
    assert!(step("exact duplicates").examples[0].contains("row 4: duplicate of row 2"), "{report}");
    assert_eq!(step("near duplicates").removed, 1);
    assert!(step("near duplicates").examples[0].contains("row 5: duplicate of row 2"), "{report}");
    assert_eq!(step("chars <= 200").removed, 1);
    assert_eq!(report.removed(), 4);
    assert_eq!(clean.examples()[0], Example::pair("Café prices?", "About 3 euros."));
    assert_eq!(clean.examples()[1], Example::pair("What is Rust?", "A systems language.\nFast."));
    assert_eq!(clean.origins(), ["row 1", "row 2", "row 7"]);
    let text = report.to_string();
    assert!(text.contains("7 rows in, 3 out") && text.contains("near duplicates"), "{text}");

    // Token filters count the chat-templated text; a filter that removes everything says so.
    let (short, report) = data.clean(&CleanOptions::default().tokenizer(smollm2()).max_tokens(45)).unwrap();
    assert!(report.step("tokens <= 45").unwrap().removed >= 1, "{report}");
    assert!(short.examples().iter().all(|e| e.chars() < 60));
    let message = error_of(data.clean(&CleanOptions::default().min_chars(10_000)));
    assert!(message.contains("`chars >= 10000` filter removed all 4 remaining rows"), "{message}");
    assert!(error_of(data.clean(&CleanOptions::default().max_tokens(5))).contains("need a tokenizer"));
}

fn labelled(n: usize, classes: &[(&str, usize)]) -> Dataset {
    let mut examples = Vec::new();
    for (label, count) in classes {
        for i in 0..*count {
            examples.push(Example::labeled(format!("{label} example {i} of {n}"), label));
        }
    }
    Dataset::from_examples(examples).unwrap()
}

#[test]
fn splits_are_seeded_stratified_and_disjoint() {
    let data = labelled(200, &[("rare", 20), ("common", 180)]);
    let options = SplitOptions::new(0.7, 0.2, 0.1).seed(3);
    let a = data.split(&options).unwrap();
    let b = data.split(&options).unwrap();
    assert_eq!(a, b);
    assert_ne!(a.train.origins(), data.split(&options.clone().seed(4)).unwrap().train.origins());
    assert_eq!((a.train.len(), a.validation.len(), a.test.len()), (140, 40, 20));
    assert_eq!(a.validation.label_counts(), vec![("common".to_string(), 36), ("rare".to_string(), 4)]);
    assert_eq!(a.test.label_counts(), vec![("common".to_string(), 18), ("rare".to_string(), 2)]);
    let mut all: Vec<&String> = a.iter().flat_map(|(_, part)| part.origins()).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 200, "every example lands in exactly one split");
    // Pinned (and reproduced by a separate Python SplitMix64 + Fisher-Yates) so a change of
    // generator, which would reshuffle every user's split, fails here.
    assert_eq!(&a.test.origins()[..3], ["example 3", "example 10", "example 25"]);
    assert!(error_of(data.split(&SplitOptions::new(0.8, 0.3, 0.1))).contains("add up to 1"));
}

/// Decoded tokens where labels are not IGNORE_INDEX.
fn trained_text(tokenizer: &Tokenizer, row: &TokenizedRow) -> String {
    let ids: Vec<u32> = row.labels.iter().filter(|&&l| l != IGNORE_INDEX).map(|&l| l as u32).collect();
    tokenizer.decode(&ids, false).unwrap()
}

#[test]
fn chat_tokens_match_transformers_and_only_responses_are_trained() {
    let tokenizer = smollm2();
    let file = workspace().join("notebooks/data/quickstart_qa.jsonl");
    let data = Dataset::load(&file).unwrap();
    let tokens = data.tokenize(tokenizer, &TokenizeOptions::default()).unwrap();
    let reference: serde_json::Value = serde_json::from_str(&run_python("data_reference.py", &["chat", file.to_str().unwrap()])).unwrap();
    let reference = reference.as_array().unwrap();
    assert_eq!(reference.len(), tokens.len());
    for (i, (row, expected)) in tokens.rows().iter().zip(reference).enumerate() {
        let ids: Vec<u32> = expected["input_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        assert_eq!(row.input_ids, ids, "example {i}");
        let prompt_len = expected["prompt_len"].as_u64().unwrap() as usize;
        assert!(row.labels[..prompt_len].iter().all(|&l| l == IGNORE_INDEX), "example {i}: prompt tokens are not trained");
        let response: Vec<i64> = row.input_ids[prompt_len..].iter().map(|&t| t as i64).collect();
        assert_eq!(row.labels[prompt_len..], response, "example {i}: response tokens are their own labels");
    }
    let Example::Chat(messages) = &data.examples()[0] else { unreachable!() };
    assert_eq!(trained_text(tokenizer, &tokens.rows()[0]), format!("{}<|im_end|>\n", messages[1].content));

    // Multi-turn: both assistant turns are trained, the user turns are not.
    let talk = Dataset::from_examples(vec![Example::chat(vec![
        ChatMessage::user("Hi"),
        ChatMessage::assistant("Hello!"),
        ChatMessage::user("How are you?"),
        ChatMessage::assistant("Fine, thanks."),
    ])])
    .unwrap();
    let talk = talk.tokenize(tokenizer, &TokenizeOptions::default()).unwrap();
    assert_eq!(trained_text(tokenizer, &talk.rows()[0]), "Hello!<|im_end|>\nFine, thanks.<|im_end|>\n");

    let whole = data.tokenize(tokenizer, &TokenizeOptions::default().train_on(TrainOn::WholeText)).unwrap();
    let row = &whole.rows()[0];
    assert_eq!(row.labels, row.input_ids.iter().map(|&t| t as i64).collect::<Vec<_>>());
}

#[test]
fn truncation_keeps_the_chosen_side_and_is_counted() {
    let tokenizer = smollm2();
    let data = tunebook::data::quickstart().unwrap().head(4);
    let full = data.tokenize(tokenizer, &TokenizeOptions::default()).unwrap();
    let right = data.tokenize(tokenizer, &TokenizeOptions::default().max_len(30)).unwrap();
    let left = data.tokenize(tokenizer, &TokenizeOptions::default().max_len(30).truncation(Truncation::Left)).unwrap();
    for ((f, r), l) in full.rows().iter().zip(right.rows()).zip(left.rows()) {
        assert_eq!(r.input_ids, f.input_ids[..30]);
        assert_eq!(l.input_ids, f.input_ids[f.len() - 30..]);
        assert_eq!(l.labels, f.labels[f.len() - 30..]);
    }
    let stats = right.stats();
    assert_eq!(stats.truncated, 4);
    assert_eq!(stats.truncated_tokens, full.stats().total_tokens - 120);
    assert_eq!((stats.max, stats.total_tokens), (30, 120));
}

#[test]
fn token_statistics_are_exact_on_a_hand_checked_input() {
    // MiniLM's WordPiece: "yes" is one token, plus [CLS] and [SEP]: n words -> n + 2 tokens.
    let examples: Vec<Example> = (1..=20).map(|n| Example::labeled(vec!["yes"; n].join(" "), if n <= 5 { "short" } else { "long" })).collect();
    let data = Dataset::from_examples(examples).unwrap();
    let stats = data.tokenize(&minilm(), &TokenizeOptions::default().max_len(20)).unwrap().stats();
    // Lengths 3..=22 cut to 20: 3..=20 then 20, 20.
    let mut lengths: Vec<usize> = (3..=20).collect();
    lengths.extend([20, 20]);
    assert_eq!(stats.lengths, lengths);
    assert_eq!(stats.examples, 20);
    assert_eq!(stats.total_tokens, 247);
    assert_eq!(stats.mean, 247.0 / 20.0);
    assert_eq!(stats.median, 12.5);
    assert_eq!(stats.p95, 20);
    assert_eq!((stats.min, stats.max), (3, 20));
    assert_eq!((stats.truncated, stats.truncated_tokens), (2, 3));
    assert_eq!(stats.tokens_per_epoch, 247);
    assert_eq!(stats.label_counts, vec![("long".to_string(), 15), ("short".to_string(), 5)]);
}

#[test]
fn packing_keeps_examples_whole_and_separate() {
    let tokenizer = smollm2();
    let data = tunebook::data::quickstart().unwrap();
    let tokens = data.tokenize(tokenizer, &TokenizeOptions::default().max_len(128)).unwrap();
    let packed = tokens.pack(256).unwrap();
    assert_eq!(packed.packed_len(), Some(256));
    assert!(packed.len() < tokens.len() / 2 + 1, "{} rows for {} examples", packed.len(), tokens.len());
    let mut pieces: Vec<Vec<u32>> = Vec::new();
    for row in packed.rows() {
        assert!(row.len() <= 256);
        assert_eq!((row.segments.len(), row.labels.len()), (row.len(), row.len()));
        let mut start = 0;
        while start < row.len() {
            let segment = row.segments[start];
            let end = (start..row.len()).find(|&t| row.segments[t] != segment).unwrap_or(row.len());
            assert_eq!(segment, if start == 0 { 0 } else { row.segments[start - 1] + 1 }, "segments count up");
            assert_eq!(row.labels[start], IGNORE_INDEX, "no example learns the next one's first token");
            pieces.push(row.input_ids[start..end].to_vec());
            start = end;
        }
    }
    let mut originals: Vec<Vec<u32>> = tokens.rows().iter().map(|r| r.input_ids.clone()).collect();
    originals.sort();
    pieces.sort();
    assert_eq!(pieces, originals, "every example appears once, intact");
    assert_eq!(packed.stats().tokens_per_epoch, packed.len() * 256);
    assert!(error_of(tokens.pack(64)).contains("longer than the packing length 64"));
    let classes = labelled(4, &[("a", 2), ("b", 2)]).tokenize(&minilm(), &TokenizeOptions::default()).unwrap();
    assert!(error_of(classes.pack(64)).contains("classification"));
}

#[test]
fn batches_pad_mask_and_bucket() {
    let tokenizer = smollm2();
    let data = tunebook::data::quickstart().unwrap();
    let tokens = data.tokenize(tokenizer, &TokenizeOptions::default()).unwrap();
    let batch = tokens.collate(&[0, 1, 2], tch::Device::Cpu);
    let longest = (0..3).map(|i| tokens.rows()[i].len()).max().unwrap() as i64;
    assert_eq!(batch.input_ids.size(), [3, longest]);
    assert!(batch.segments.is_none());
    for r in 0..3 {
        let n = tokens.rows()[r].len() as i64;
        assert_eq!(batch.attention_mask.get(r as i64).sum(tch::Kind::Int64).int64_value(&[]), n);
        if n < longest {
            assert_eq!(batch.labels.int64_value(&[r as i64, n]), IGNORE_INDEX);
            assert_eq!(batch.input_ids.int64_value(&[r as i64, n]), tokenizer.pad_token_id() as i64);
        }
    }
    assert_eq!(batch.tokens, (0..3).map(|i| tokens.rows()[i].len()).sum::<usize>());

    let options = BatchOptions::new(8).seed(5);
    let plan = tokens.batch_indices(&options);
    assert_eq!(plan, tokens.batch_indices(&options));
    assert_ne!(plan, tokens.batch_indices(&options.seed(6)));
    let mut seen: Vec<usize> = plan.concat();
    seen.sort();
    assert_eq!(seen, (0..tokens.len()).collect::<Vec<_>>());
    assert_eq!(tokens.batches(&BatchOptions::new(10)).len(), 7);
    assert_eq!(tokens.batches(&BatchOptions::new(10).drop_last(true)).len(), 6);
    let padding = |options: BatchOptions| -> i64 { tokens.batches(&options).map(|b| b.attention_mask.numel() as i64 - b.tokens as i64).sum() };
    assert!(padding(options.bucket_by_length(true)) < padding(options), "bucketing reduces padding");

    let packed = tokens.pack(512).unwrap();
    let batch = packed.batches(&BatchOptions::new(2).shuffle(false)).next().unwrap();
    assert_eq!(batch.input_ids.size(), [2, 512]);
    let segments = batch.segments.unwrap();
    let used = packed.rows()[0].len() as i64;
    assert_eq!(segments.int64_value(&[0, 0]), 0);
    if used < 512 {
        assert_eq!(segments.int64_value(&[0, used]), PADDING_SEGMENT);
    }
    assert_eq!(batch.examples, packed.rows()[..2].iter().map(|r| *r.segments.last().unwrap() as usize + 1).sum::<usize>());

    let classes = labelled(4, &[("a", 2), ("b", 2)]).tokenize(&minilm(), &TokenizeOptions::default()).unwrap();
    let batch = classes.collate(&[0, 3], tch::Device::Cpu);
    assert_eq!(Vec::<i64>::try_from(&batch.labels).unwrap(), [0, 1]);
}

#[test]
fn saved_datasets_load_back_identical() {
    let dir = tempfile::tempdir().unwrap();
    let chat = tunebook::data::quickstart().unwrap();
    let multi = Dataset::from_examples(vec![Example::chat(vec![ChatMessage::system("s"), ChatMessage::user("u"), ChatMessage::assistant("a")])]).unwrap();
    let classes = labelled(3, &[("b", 2), ("a", 1)]).with_labels(LabelMap::new(["b", "a"])).unwrap();
    let text = Dataset::from_examples(vec![Example::text("raw text\nwith lines"), Example::text("ünïcödé")]).unwrap();
    for data in [&chat, &multi, &classes, &text] {
        for ext in ["parquet", "jsonl"] {
            let path = dir.path().join(format!("saved.{ext}"));
            data.save(&path).unwrap();
            let back = Dataset::load(&path).unwrap();
            assert_eq!(&back, data, "{} as {ext}", data.name());
        }
    }
    assert_eq!(Dataset::load(dir.path().join("saved.jsonl")).unwrap().origins(), ["example 1", "example 2"]);
    assert!(error_of(chat.save(dir.path().join("saved.csv"))).contains(".parquet or .jsonl"));
}

#[test]
fn shipped_sets_load_with_their_documented_counts() {
    let reference: serde_json::Value = serde_json::from_str(&run_python("data_reference.py", &["shipped"])).unwrap();
    for (set, file, rows) in [(VaderSet::Tweets, "tweets_GroundTruth.txt", 4200), (VaderSet::MovieReviews, "movieReviewSnippets_GroundTruth.txt", 10_605)] {
        let data = vader(set).unwrap();
        assert_eq!(data.len(), rows);
        assert!(data.skipped().is_empty());
        let counts: Vec<(String, usize)> = ["negative", "neutral", "positive"].iter().map(|c| (c.to_string(), reference[file][c].as_u64().unwrap() as usize)).collect();
        assert_eq!(data.label_counts(), counts, "{file}");
    }
    let tweets = vader(VaderSet::Tweets).unwrap();
    assert!(!tweets.examples().iter().any(|e| e.texts()[0].contains("&amp;")), "HTML escapes are undone");
    assert_eq!(tweets.origin(0), "tweets_GroundTruth.txt:1");
    let (_, report) = vader(VaderSet::MovieReviews).unwrap().clean(&CleanOptions::default()).unwrap();
    assert_eq!(report.step("exact duplicates").unwrap().removed, 2, "{report}");
    assert!(report.step("whitespace").unwrap().changed > 100, "runs of spaces where dashes were");

    let bot = chatterbot().unwrap();
    assert_eq!(bot.len(), reference["chatterbot"]["pairs"].as_u64().unwrap() as usize);
    assert_eq!(bot.len(), 2306);
    assert_eq!(bot.skipped().len(), 1);
    assert!(bot.skipped()[0].origin.starts_with("trivia.yml conversation"), "{:?}", bot.skipped());
    let (_, report) = bot.clean(&CleanOptions::default()).unwrap();
    assert_eq!(report.step("unreadable rows").unwrap().removed, 1);

    let quick = quickstart().unwrap();
    assert_eq!(quick.len(), 64);
    let (clean, report) = quick.clean(&CleanOptions::default()).unwrap();
    assert_eq!((clean.len(), report.removed()), (64, 0), "the bundled file is already clean: {report}");
}

/// Builds the CLI with the profile these tests were built with and runs it.
fn tunebook_cli(args: &[&str]) -> std::process::Output {
    let profile_dir = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let mut build = std::process::Command::new(env!("CARGO"));
    build.args(["build", "-q", "-p", "tunebook", "--bin", "tunebook"]).current_dir(workspace());
    if release {
        build.arg("--release");
    }
    assert!(build.status().unwrap().success(), "building the tunebook CLI");
    std::process::Command::new(profile_dir.join("tunebook")).args(args).current_dir(workspace()).output().unwrap()
}

#[test]
fn cli_inspect_prints_report_splits_and_stats() {
    let out = tunebook_cli(&["data", "inspect", "notebooks/data/quickstart_qa.jsonl", "--max-len", "64", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["cleaning"]["rows_out"], 64);
    assert_eq!(json["splits"]["train"].as_u64().unwrap() + json["splits"]["validation"].as_u64().unwrap() + json["splits"]["test"].as_u64().unwrap(), 64);
    let train = &json["token_stats"][0];
    assert_eq!(train["max"], 64);
    assert!(train["truncated"].as_u64().unwrap() > 0);

    let dir = tempfile::tempdir().unwrap();
    let broken = write(dir.path(), "broken.jsonl", "{\"prompt\": \"a\", \"response\": \"b\"}\n{oops}\n");
    let out = tunebook_cli(&["data", "inspect", broken.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken.jsonl:2") && stderr.contains("invalid JSON"), "{stderr}");
}
