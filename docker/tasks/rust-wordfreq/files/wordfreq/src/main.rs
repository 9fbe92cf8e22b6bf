//! wordfreq: prints the most frequent words of a text file.
//!
//! usage: wordfreq FILE [N]      (N defaults to 10)
//! output: one line per word, `<count>\t<word>`, most frequent first.

mod tokenize;

use std::collections::HashMap;
use std::env;
use std::fs;
use std::process;

fn count_words(text: &str) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for word in tokenize::words(text) {
        *counts.entry(word).or_insert(0) += 1;
    }
    counts
}

fn top_n(counts: &HashMap<String, usize>, n: usize) -> Vec<(&str, usize)> {
    let mut entries: Vec<(&str, usize)> = counts.iter().map(|(w, c)| (w.as_str(), *c)).collect();
    entries.sort_by(|a, b| b.1.cmp(&a.1));
    entries.truncate(n);
    entries
}

fn main() {
    let args: Vec<String> = env::args().collect();
    if args.len() < 2 {
        eprintln!("usage: {} FILE [N]", args[0]);
        process::exit(2);
    }
    let n: usize = match args.get(2) {
        Some(s) => s.parse().unwrap_or_else(|_| {
            eprintln!("N must be a positive integer, got {:?}", s);
            process::exit(2);
        }),
        None => 10,
    };
    let text = fs::read_to_string(&args[1]).unwrap_or_else(|e| {
        eprintln!("{}: {}", args[1], e);
        process::exit(1);
    });
    let counts = count_words(&text);
    let total: u32 = counts.values().sum();
    for (word, count) in top_n(&counts, n) {
        println!("{}\t{}", count, word);
    }
    eprintln!("{} words, {} distinct", total, counts.len());
}
