//! Residents, in ID-number order, with their social insurance and electronic licences.
//!
//! ID numbers sort by address code, then birth date, then order code, so the generator walks the
//! cells (address code × birth date) in that order and places a number of residents in each cell:
//! the output arrives sorted without ever holding the population in memory.

use crate::firms::CodeList;
use crate::geo::AddressSpace;
use crate::rng::{Rng, mix};
use crate::words::{ETHNICITIES, GIVEN_FEMALE, GIVEN_MALE, PHONE_PREFIXES, SURNAMES};
use crate::writer::{TableWriter, V};
use crate::{Config, Error, IdBytes, Result, Selection, days, finish, schema};
use citybrain_types::{CitizenId, Date};
use indicatif::ProgressBar;

/// Address codes of birth registration with weights: Nanhai itself, the rest of Foshan and
/// Guangdong, and the provinces most migrants to the Pearl River Delta come from. Sorted.
const ADDRESS_CODES: &[(u32, f64)] = &[
    (360102, 0.5),
    (360702, 1.2),
    (410102, 0.5),
    (411302, 0.8),
    (420102, 0.5),
    (421002, 0.8),
    (430102, 0.8),
    (430521, 1.0),
    (431002, 1.5),
    (440103, 0.8),
    (440106, 1.0),
    (440111, 0.6),
    (440507, 0.6),
    (440604, 3.0),
    (440605, 52.0),
    (440606, 2.5),
    (440607, 1.5),
    (440608, 1.2),
    (440802, 1.5),
    (440902, 2.0),
    (441202, 1.5),
    (441402, 1.5),
    (441702, 1.2),
    (441802, 1.5),
    (450102, 0.8),
    (450921, 2.0),
    (452101, 0.6),
    (500101, 0.8),
    (510104, 0.8),
    (511302, 1.2),
    (520102, 0.8),
    (522101, 0.8),
];

/// Address codes after the weighted ones, of no weight: they receive only residents left over
/// once the weighted codes' cells are full (from Nanhai's own code onwards; with the default
/// seed that first happens at about 700 million residents), so a billion residents still get
/// unique numbers in order. They are filled birth date by birth date from the first, so their
/// ages follow no age structure. Below that they receive no one and change nothing.
const OVERFLOW_CODES: &[u32] = &[
    530102, 530103, 530111, 610102, 610103, 610104, 620102, 620103, 630102, 640104, 650102, 650103,
];

/// First and last birth dates generated, and the reference date ages are counted at.
const FIRST_BIRTH: (i32, u32, u32) = (1935, 1, 1);
const LAST_BIRTH: (i32, u32, u32) = (2024, 12, 31);
const REFERENCE_YEAR: i32 = 2025;
/// Order codes 001..=999 exist per address code and birth date.
const ORDERS_PER_CELL: u64 = 999;

pub(crate) struct PeopleOut {
    pub(crate) residents: (u64, usize),
    pub(crate) insurance: (u64, usize),
    pub(crate) licences: (u64, usize),
    /// Adults eligible as legal representatives, in ID order.
    pub(crate) rep_pool: Vec<IdBytes>,
}

/// Relative number of residents born in `year` (the district's age structure: many residents of
/// working age, fewer children and elderly).
fn year_weight(year: i32) -> f64 {
    match REFERENCE_YEAR - year {
        a if a < 18 => 0.9,
        a if a < 30 => 1.3,
        a if a < 45 => 1.6,
        a if a < 60 => 1.2,
        a if a < 75 => 0.7,
        _ => 0.25,
    }
}

/// Weight of one cell, with a per-cell jitter from a hash so counts vary naturally.
fn cell_weight(seed: u64, code_weight: f64, code: u32, day: i32, year_w: f64) -> f64 {
    let h = mix(seed ^ mix((u64::from(code) << 32) ^ (day as u32 as u64)));
    let jitter = 0.5 + (h >> 11) as f64 / (1u64 << 53) as f64;
    code_weight * year_w * jitter
}

/// Walks the cells (address code × birth date) in ID order and calls `place(code, day, n)` for
/// every cell that receives `n` > 0 residents, `n` ≤ `per_cell`, `persons` in all. Each weighted
/// cell gets its share of `persons`; what a full cell cannot hold is carried to the next.
fn plan(
    seed: u64,
    persons: u64,
    per_cell: u64,
    mut place: impl FnMut(u32, i32, u64) -> Result<()>,
) -> Result<()> {
    let first = Date::from_ymd(FIRST_BIRTH.0, FIRST_BIRTH.1, FIRST_BIRTH.2)
        .expect("valid")
        .days();
    let last = Date::from_ymd(LAST_BIRTH.0, LAST_BIRTH.1, LAST_BIRTH.2)
        .expect("valid")
        .days();
    let year_w: Vec<f64> = (FIRST_BIRTH.0..=LAST_BIRTH.0).map(year_weight).collect();
    let yw = |day: i32| year_w[(Date::from_days(day).year() - FIRST_BIRTH.0) as usize];

    // Pass 1: the total weight, so pass 2 can give every cell its exact share of `persons`.
    let mut total = 0.0;
    for (code, w) in ADDRESS_CODES {
        for day in first..=last {
            total += cell_weight(seed, *w, *code, day, yw(day));
        }
    }
    let mut cum = 0.0;
    let mut placed = 0u64;
    let mut carry = 0u64;
    for (code, w) in ADDRESS_CODES {
        for day in first..=last {
            cum += cell_weight(seed, *w, *code, day, yw(day));
            let upto = ((cum / total) * persons as f64).round() as u64;
            let n = upto.saturating_sub(placed) + carry;
            placed = placed.max(upto);
            carry = n.saturating_sub(per_cell);
            if n > carry {
                place(*code, day, n - carry)?;
            }
        }
    }
    // Rounding leaves nothing over; a carry remains only when the weighted codes are full.
    for code in OVERFLOW_CODES {
        for day in first..=last {
            if carry == 0 {
                return Ok(());
            }
            let n = carry.min(per_cell);
            carry -= n;
            place(*code, day, n)?;
        }
    }
    if carry > 0 {
        return Err(Error::Parameter(format!(
            "{persons} residents exceed the ID numbers the generator's address codes can hold"
        )));
    }
    Ok(())
}

/// Fails when `persons` residents cannot all be numbered (checked before anything is written).
pub(crate) fn check_capacity(seed: u64, persons: u64) -> Result<()> {
    plan(seed, persons, ORDERS_PER_CELL, |_, _, _| Ok(()))
}

/// Writes the residents and, when selected, their social insurance and licences. Returns the
/// adults eligible as legal representatives when `keep_reps` (the entities need them).
pub(crate) fn generate(
    cfg: &Config,
    sel: &Selection,
    space: &AddressSpace,
    employers: &CodeList,
    entities: u64,
    keep_reps: bool,
    bar: &ProgressBar,
) -> Result<PeopleOut> {
    bar.set_message("residents");
    let mut out = Writers::new(cfg, sel)?;
    let mut rng = Rng::derive(cfg.seed, "residents");
    let adults_expected = cfg.persons as f64 * 0.7;
    let rep_chance = if adults_expected > 0.0 {
        (2.0 * entities as f64 / adults_expected).min(1.0)
    } else {
        0.0
    };
    let mut rep_pool: Vec<IdBytes> = if keep_reps {
        Vec::with_capacity((entities as f64 * 2.2) as usize)
    } else {
        Vec::new()
    };
    let mut orders = Vec::new();
    let mut ctx = PersonCtx::default();
    plan(cfg.seed, cfg.persons, ORDERS_PER_CELL, |code, day, n| {
        choose_orders(&mut rng, n as usize, &mut orders);
        for &order in &orders {
            let id = CitizenId::from_parts(code, Date::from_days(day), order);
            ctx.fill(&mut rng, &id, code, space);
            out.write_person(&mut rng, &ctx, employers)?;
            // Drawn whether kept or not, so the residents are the same either way.
            let rep = ctx.age >= 25 && (rng.chance(rep_chance) || rep_pool.is_empty());
            if rep && keep_reps {
                let mut b = [0u8; 18];
                b.copy_from_slice(id.as_str().as_bytes());
                rep_pool.push(b);
            }
            bar.inc(1);
        }
        Ok(())
    })?;
    Ok(PeopleOut {
        residents: finish(out.residents)?,
        insurance: finish(out.insurance)?,
        licences: finish(out.licences)?,
        rep_pool,
    })
}

/// `n` distinct order codes in 1..=999, ascending.
fn choose_orders(rng: &mut Rng, n: usize, out: &mut Vec<u16>) {
    out.clear();
    if n <= 64 {
        while out.len() < n {
            let v = 1 + rng.below(ORDERS_PER_CELL) as u16;
            if !out.contains(&v) {
                out.push(v);
            }
        }
        out.sort_unstable();
    } else {
        // Selection sampling (Knuth's algorithm S): one pass, already in order.
        let mut needed = n as u64;
        for v in 1..=ORDERS_PER_CELL {
            let left = ORDERS_PER_CELL - v + 1;
            if rng.below(left) < needed {
                out.push(v as u16);
                needed -= 1;
            }
        }
    }
}

/// The attributes of the resident being written, reused across rows to avoid allocation.
#[derive(Default)]
struct PersonCtx {
    id: String,
    name: String,
    male: bool,
    birth: i32,
    age: i32,
    phone: String,
    address_id: String,
    address: String,
    town: &'static str,
    local: bool,
}

impl PersonCtx {
    fn fill(&mut self, rng: &mut Rng, id: &CitizenId, code: u32, space: &AddressSpace) {
        self.id.clear();
        self.id.push_str(id.as_str());
        self.male = id.is_male();
        self.birth = id.birth_date().days();
        self.age = REFERENCE_YEAR - id.birth_date().year();
        self.name.clear();
        self.name.push_str(rng.weighted::<&str>(SURNAMES));
        let given = if self.male { GIVEN_MALE } else { GIVEN_FEMALE };
        self.name.push_str(rng.pick::<&str>(given));
        if rng.chance(0.8) {
            self.name.push_str(rng.pick::<&str>(given));
        }
        self.phone = format!("{}{:08}", rng.pick(PHONE_PREFIXES), rng.below(100_000_000));
        let a = space.get(rng.below(space.len()));
        self.address_id = a.id;
        self.address = a.full;
        self.town = a.town;
        self.local = code / 100 == 4406 || rng.chance(0.2);
    }
}

/// The writers of the selected tables (`None`: not written). Insurance and licences draw from
/// streams of their own, so writing or skipping one table leaves every other table's rows
/// unchanged.
struct Writers {
    residents: Option<TableWriter>,
    insurance: Option<TableWriter>,
    licences: Option<TableWriter>,
    insurance_rng: Rng,
    licence_rng: Rng,
    licence_seq: u64,
}

impl Writers {
    fn new(cfg: &Config, sel: &Selection) -> Result<Self> {
        Ok(Self {
            residents: sel.open(cfg, schema::residents())?,
            insurance: sel.open(cfg, schema::social_insurance())?,
            licences: sel.open(cfg, schema::e_licences())?,
            insurance_rng: Rng::derive(cfg.seed, "social-insurance"),
            licence_rng: Rng::derive(cfg.seed, "e-licences"),
            licence_seq: 0,
        })
    }

    fn write_person(&mut self, rng: &mut Rng, p: &PersonCtx, employers: &CodeList) -> Result<()> {
        let ethnicity = rng.weighted::<&str>(ETHNICITIES);
        if let Some(w) = &mut self.residents {
            w.push(&[
                V::S(&p.id),
                V::S(&p.name),
                V::S(if p.male { "男" } else { "女" }),
                V::D(p.birth),
                V::S(ethnicity),
                V::S(&p.phone),
                V::S(&p.address_id),
                V::S(&p.address),
                V::S(p.town),
                V::S(if p.local {
                    "户籍人口"
                } else {
                    "流动人口"
                }),
            ])?;
        }
        self.write_insurance(p, employers)?;
        self.write_licences(p)
    }

    fn write_insurance(&mut self, p: &PersonCtx, employers: &CodeList) -> Result<()> {
        let (Some(out), rng) = (&mut self.insurance, &mut self.insurance_rng) else {
            return Ok(());
        };
        let working = (16..60).contains(&p.age);
        if !(working && rng.chance(0.72) || p.age >= 60 && rng.chance(0.6)) {
            return Ok(());
        }
        let earliest = (p.birth + 16 * 365).max(days(1995, 1, 1));
        let start = rng.range(
            i64::from(earliest),
            i64::from(days(2025, 1, 1)).max(i64::from(earliest)),
        ) as i32;
        let employer = if working && !employers.is_empty() && rng.chance(0.85) {
            Some(employers.get(rng.below(employers.len() as u64) as usize))
        } else {
            None
        };
        let base = (rng.range(450, 3000) * 10) as f64;
        let types: &[(&str, f64)] = if working {
            &[
                ("基本养老保险", 1.0),
                ("基本医疗保险", 0.95),
                ("失业保险", 0.6),
                ("工伤保险", 0.55),
            ]
        } else {
            &[("基本养老保险", 1.0), ("基本医疗保险", 0.9)]
        };
        for (kind, p_kind) in types {
            if !rng.chance(*p_kind) {
                continue;
            }
            let status = if !working && *kind == "基本养老保险" {
                "退休领取"
            } else if rng.chance(0.9) {
                "参保缴费"
            } else {
                "暂停缴费"
            };
            out.push(&[
                V::S(&p.id),
                V::S(kind),
                V::S(status),
                V::D(start),
                employer.as_deref().map_or(V::Null, V::S),
                V::F(base),
            ])?;
        }
        Ok(())
    }

    fn write_licences(&mut self, p: &PersonCtx) -> Result<()> {
        let (Some(out), rng) = (&mut self.licences, &mut self.licence_rng) else {
            return Ok(());
        };
        // (type, prefix, authority, minimum age, chance, validity in years or 0 for none)
        let kinds: &[(&str, &str, &str, i32, f64, i32)] = &[
            ("居民身份证", "SFZ", "佛山市公安局南海分局", 16, 1.0, 20),
            ("结婚证", "JHZ", "佛山市南海区民政局", 22, 0.55, 0),
            (
                "机动车驾驶证",
                "JSZ",
                "佛山市公安局交通警察支队",
                18,
                0.35,
                6,
            ),
            (
                "不动产权证书",
                "BDC",
                "佛山市南海区不动产登记中心",
                25,
                0.25,
                0,
            ),
            ("居住证", "JZZ", "佛山市公安局南海分局", 16, 0.7, 1),
            ("出生医学证明", "CSZ", "佛山市南海区卫生健康局", 0, 1.0, 0),
        ];
        for (kind, prefix, authority, min_age, chance, years) in kinds {
            let applies = match *prefix {
                "JZZ" => !p.local && p.age >= *min_age,
                "CSZ" => p.age < 6,
                _ => p.age >= *min_age,
            };
            if !applies || !rng.chance(*chance) {
                continue;
            }
            let earliest = (p.birth + min_age * 365).max(days(2005, 1, 1));
            let issue = rng.range(
                i64::from(earliest),
                i64::from(days(2025, 6, 30)).max(i64::from(earliest)),
            ) as i32;
            let valid = (*years > 0).then(|| issue + years * 365);
            self.licence_seq += 1;
            let no = format!(
                "{prefix}440605{}{:09}",
                Date::from_days(issue).year(),
                self.licence_seq
            );
            let status = if valid.is_some_and(|v| v < days(2025, 6, 30)) {
                "已过期"
            } else {
                "有效"
            };
            out.push(&[
                V::S(&p.id),
                V::S(&no),
                V::S(kind),
                V::S(&p.name),
                V::D(issue),
                valid.map_or(V::Null, V::D),
                V::S(authority),
                V::S(status),
            ])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every (code, day, n) the plan places for `persons` at `per_cell` per cell.
    fn placed(persons: u64, per_cell: u64) -> Result<Vec<(u32, i32, u64)>> {
        let mut out = Vec::new();
        plan(20190601, persons, per_cell, |code, day, n| {
            out.push((code, day, n));
            Ok(())
        })?;
        Ok(out)
    }

    fn check(cells: &[(u32, i32, u64)], persons: u64, per_cell: u64) {
        assert_eq!(cells.iter().map(|c| c.2).sum::<u64>(), persons);
        assert!(cells.iter().all(|c| (1..=per_cell).contains(&c.2)));
        assert!(
            cells
                .windows(2)
                .all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1)),
            "cells in ID order, each once"
        );
    }

    #[test]
    fn a_billion_residents_get_numbers_and_fewer_never_reach_the_overflow_codes() {
        let billion = placed(1_000_000_000, ORDERS_PER_CELL).unwrap();
        check(&billion, 1_000_000_000, ORDERS_PER_CELL);
        assert!(billion.iter().any(|c| OVERFLOW_CODES.contains(&c.0)));

        let hundred_million = placed(100_000_000, ORDERS_PER_CELL).unwrap();
        check(&hundred_million, 100_000_000, ORDERS_PER_CELL);
        assert!(
            !hundred_million
                .iter()
                .any(|c| OVERFLOW_CODES.contains(&c.0))
        );
    }

    #[test]
    fn residents_beyond_the_weighted_codes_overflow_and_beyond_every_code_are_refused() {
        let days = (FIRST_BIRTH.0..=LAST_BIRTH.0)
            .map(|y| {
                if Date::from_ymd(y, 2, 29).is_some() {
                    366
                } else {
                    365
                }
            })
            .sum::<u64>();
        let weighted = ADDRESS_CODES.len() as u64 * days * 2;
        let cells = placed(weighted, 2).unwrap();
        check(&cells, weighted, 2);
        assert!(cells.iter().any(|c| OVERFLOW_CODES.contains(&c.0)));

        let every = weighted + OVERFLOW_CODES.len() as u64 * days * 2;
        let err = placed(every + 1, 2).unwrap_err().to_string();
        assert!(err.contains("exceed the ID numbers"), "{err}");
    }
}
