//! Benchmarks of the hub's hot paths. Each benchmark group measures the hub's code beside a
//! naive baseline in the same run, so results read as ratios rather than absolute times.
//!
//! Run with `cargo bench -p citybrain-benches`. This library holds the baselines.

/// The first way one would write ID-number validation: collect chars, convert each digit,
/// build strings for the date. Kept as the benchmark's baseline.
pub fn naive_citizen_id_ok(s: &str) -> bool {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() != 18 {
        return false;
    }
    let weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let mut sum = 0;
    for i in 0..17 {
        match chars[i].to_digit(10) {
            Some(d) => sum += d * weights[i],
            None => return false,
        }
    }
    let year: String = chars[6..10].iter().collect();
    let month: String = chars[10..12].iter().collect();
    let day: String = chars[12..14].iter().collect();
    let (Ok(y), Ok(m), Ok(d)) = (
        year.parse::<i32>(),
        month.parse::<u32>(),
        day.parse::<u32>(),
    ) else {
        return false;
    };
    if citybrain_types::Date::from_ymd(y, m, d).is_none() {
        return false;
    }
    let check = "10X98765432".chars().nth((sum % 11) as usize);
    check == chars[17].to_uppercase().next()
}

/// Naive credit-code validation: a linear search of the character set per character.
pub fn naive_credit_code_ok(s: &str) -> bool {
    let set = "0123456789ABCDEFGHJKLMNPQRTUWXY";
    let weights = [
        1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
    ];
    let chars: Vec<char> = s.chars().collect();
    if chars.len() != 18 {
        return false;
    }
    let mut sum = 0;
    for i in 0..17 {
        match set.find(chars[i]) {
            Some(v) => sum += v * weights[i],
            None => return false,
        }
    }
    let c = (31 - sum % 31) % 31;
    set.chars().nth(c) == Some(chars[17])
}

#[cfg(test)]
mod tests {
    use super::*;
    use citybrain_types::{CitizenId, CreditCode};

    #[test]
    fn baselines_agree_with_the_hub() {
        for s in [
            "11010519491231002X",
            "110105194912310021",
            "11010519491331002X",
            "abc",
        ] {
            assert_eq!(naive_citizen_id_ok(s), CitizenId::parse(s).is_ok(), "{s}");
        }
        for s in ["91350100M000100Y43", "91350100M000100Y44", "9135"] {
            assert_eq!(naive_credit_code_ok(s), CreditCode::parse(s).is_ok(), "{s}");
        }
    }
}
