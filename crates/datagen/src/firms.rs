//! Legal entities, in credit-code order, with their business licences.

use crate::geo::AddressSpace;
use crate::rng::{Rng, apportion};
use crate::words::{BRANDS, COOP_PRODUCTS, INDUSTRIES, SHOPS};
use crate::writer::V;
use crate::{Config, Error, IdBytes, Result, Selection, days, finish, schema};
use citybrain_types::{CREDIT_CHARSET, CitizenId, CreditCode, Date};
use indicatif::ProgressBar;

/// Credit codes of every entity, ascending, 18 bytes each.
#[derive(Default)]
pub(crate) struct CodeList(Vec<[u8; 18]>);

impl CodeList {
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn get(&self, i: usize) -> String {
        String::from_utf8_lossy(&self.0[i]).into_owned()
    }
}

/// Entity kinds by the second character of the code: 1 enterprise, 2 individual business,
/// 3 farmers' cooperative (shares as among Nanhai's market entities).
const KINDS: &[(u8, f64)] = &[(b'1', 0.60), (b'2', 0.38), (b'3', 0.02)];
/// 31^9: the number of 9-character organisation codes.
const ORG_SPACE: u64 = 26_439_622_160_671;

/// `n` valid credit codes registered in Nanhai (division 440605), ascending.
pub(crate) fn credit_codes(seed: u64, n: u64) -> CodeList {
    let mut rng = Rng::derive(seed, "credit-codes");
    let weights: Vec<f64> = KINDS.iter().map(|(_, w)| *w).collect();
    let mut out = Vec::with_capacity(n as usize);
    for ((kind, _), count) in KINDS.iter().zip(apportion(n, &weights)) {
        let gap = (ORG_SPACE / (count + 1)).max(1);
        let mut v = 0u64;
        for i in 0..count {
            // Increasing organisation codes with random gaps, never running out of space.
            v = (v + 1 + rng.below(2 * gap - 1)).min(ORG_SPACE - (count - i));
            let mut org = [b'0'; 9];
            let mut x = v;
            for c in org.iter_mut().rev() {
                *c = CREDIT_CHARSET[(x % 31) as usize];
                x /= 31;
            }
            let body = format!("9{}440605{}", *kind as char, String::from_utf8_lossy(&org));
            let code = CreditCode::from_body(&body).expect("body is built from the charset");
            let mut b = [0u8; 18];
            b.copy_from_slice(code.as_str().as_bytes());
            out.push(b);
        }
    }
    CodeList(out)
}

pub(crate) struct FirmsOut {
    pub(crate) entities: (u64, usize),
    pub(crate) licences: (u64, usize),
}

/// Writes the selected ones of the entities and their business licences (both are drawn either
/// way, so each is the same whether the other is written).
pub(crate) fn generate(
    cfg: &Config,
    sel: &Selection,
    space: &AddressSpace,
    codes: &CodeList,
    reps: &[IdBytes],
    bar: &ProgressBar,
) -> Result<FirmsOut> {
    bar.set_message("entities");
    if !codes.is_empty() && reps.is_empty() {
        return Err(Error::Parameter(
            "too few adult residents to act as legal representatives".into(),
        ));
    }
    let mut entities = sel.open(cfg, schema::entities())?;
    let mut licences = sel.open(cfg, schema::business_licences())?;
    let mut rng = Rng::derive(cfg.seed, "entities");
    let today = days(2025, 6, 30);
    for i in 0..codes.len() {
        let code = codes.get(i);
        let rep_bytes = rng.pick(reps);
        let rep = CitizenId::parse(std::str::from_utf8(rep_bytes).unwrap_or_default())
            .expect("representatives are generated valid");
        let adult = rep.birth_date().days() + 18 * 366;
        let earliest = adult.max(days(1985, 1, 1));
        let established = rng.range(i64::from(earliest), i64::from(today.max(earliest))) as i32;
        let (industry, word) = *rng.weighted(INDUSTRIES);
        let addr = space.get(rng.below(space.len()));
        let town_short = addr.town.trim_end_matches("街道").trim_end_matches('镇');
        let brand = rng.pick(BRANDS);
        let (name, kind, capital) = match code.as_bytes()[1] {
            b'1' => {
                let joint = rng.chance(0.1);
                let kind = if joint {
                    "股份有限公司"
                } else {
                    "有限责任公司"
                };
                let suffix = if joint {
                    "股份有限公司"
                } else {
                    "有限公司"
                };
                let cap = (10.0 * (1.0 + rng.unit() * 9.0).powf(3.0)).round();
                (format!("佛山市南海区{brand}{word}{suffix}"), kind, cap)
            }
            b'2' => {
                let cap = (rng.range(5, 500) as f64) / 10.0;
                (
                    format!("南海区{town_short}{brand}{}", rng.pick(SHOPS)),
                    "个体工商户",
                    cap,
                )
            }
            _ => {
                let cap = rng.range(5, 200) as f64;
                (
                    format!(
                        "佛山市南海区{town_short}{brand}{}专业合作社",
                        rng.pick(COOP_PRODUCTS)
                    ),
                    "农民专业合作社",
                    cap,
                )
            }
        };
        let status = *rng.weighted(&[("存续", 85.0), ("在业", 5.0), ("吊销", 4.0), ("注销", 6.0)]);
        if let Some(w) = &mut entities {
            w.push(&[
                V::S(&code),
                V::S(&name),
                V::S(kind),
                V::S(rep.as_str()),
                V::F(capital),
                V::D(established),
                V::S(industry),
                V::S(status),
                V::S(&addr.id),
                V::S(&addr.full),
                V::S(addr.town),
            ])?;
        }
        let valid_until = (!rng.chance(0.7)).then(|| established + 20 * 365);
        let lic_status = match status {
            "吊销" => "已吊销",
            "注销" => "已注销",
            _ => "有效",
        };
        if let Some(w) = &mut licences {
            w.push(&[
                V::S(&code),
                V::S(&name),
                V::S(&format!("440605{}{:08}", Date::from_days(established).year(), i + 1)),
                V::S(&format!("{industry}：{word}相关经营活动（依法须经批准的项目，经相关部门批准后方可开展经营活动）")),
                V::D(established),
                valid_until.map_or(V::Null, V::D),
                V::S("佛山市南海区市场监督管理局"),
                V::S(lic_status),
            ])?;
        }
        bar.inc(1);
    }
    Ok(FirmsOut {
        entities: finish(entities)?,
        licences: finish(licences)?,
    })
}
