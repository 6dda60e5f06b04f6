use super::*;

fn load_texts(files: &[(&str, &str)]) -> Loaded {
    let files: Vec<(String, String)> = files
        .iter()
        .map(|(p, t)| (p.to_string(), t.to_string()))
        .collect();
    load(&files, &Limits::default())
}

#[test]
fn seed_examples_parse() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/seeds");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("examples/seeds") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        files.push((format!("seeds/{}", path.file_name().unwrap().to_string_lossy()), text));
    }
    let loaded = load(&files, &Limits::default());
    let msgs: Vec<String> = loaded.diagnostics.iter().map(ToString::to_string).collect();
    println!("{}", msgs.join("\n"));
}
