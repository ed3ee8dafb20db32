//! The shipped calibration text (`fixtures/minilm/sentences.txt`) and the evaluation sentences
//! (`fixtures/minilm/eval_sentences.txt`) share no sentence and no word 4-gram, so calibrated
//! results measured on the evaluation set are held out.

use std::collections::HashSet;
use std::path::Path;

fn lines(name: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/minilm").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

/// Lower-case words, punctuation stripped (`low-lying` is `low lying`).
fn words(s: &str) -> Vec<String> {
    s.to_lowercase().split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_owned).collect()
}

fn grams(s: &str) -> HashSet<Vec<String>> {
    words(s).windows(4).map(<[String]>::to_vec).collect()
}

#[test]
fn calibration_and_evaluation_sentences_are_disjoint() {
    let calibration = lines("sentences.txt");
    let eval = lines("eval_sentences.txt");
    assert!(calibration.len() >= 120, "the calibration set has {} sentences", calibration.len());
    assert_eq!(eval.len(), 200);
    let eval_sentences: HashSet<Vec<String>> = eval.iter().map(|s| words(s)).collect();
    let eval_grams: HashSet<Vec<String>> = eval.iter().flat_map(|s| grams(s)).collect();
    let mut seen = HashSet::new();
    for s in &calibration {
        assert!(!eval_sentences.contains(&words(s)), "calibration sentence `{s}` is an evaluation sentence");
        let shared: Vec<_> = grams(s).intersection(&eval_grams).map(|g| g.join(" ")).collect();
        assert!(shared.is_empty(), "calibration sentence `{s}` shares {shared:?} with the evaluation set");
        assert!(seen.insert(words(s)), "calibration sentence `{s}` appears twice");
    }
}

#[test]
fn the_check_sees_a_shared_four_gram() {
    let eval = lines("eval_sentences.txt");
    let eval_grams: HashSet<Vec<String>> = eval.iter().flat_map(|s| grams(s)).collect();
    // An evaluation sentence's opening words, re-punctuated and re-cased, are caught.
    let first = words(&eval[0]);
    let probe = format!("{}, {}! {} {} and more", first[0].to_uppercase(), first[1], first[2], first[3]);
    assert!(!grams(&probe).is_disjoint(&eval_grams), "{probe}");
}
