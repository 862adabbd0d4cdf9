//! Nanhai district geography: its seven towns and synthetic addresses inside them.
//!
//! An address is a pure function of its index, so residents and entities can refer to any address
//! without the address table being held in memory.

use crate::rng::{Rng, apportion, mix};
use crate::words::{COMMUNITY_ROOTS, ROADS};

/// A town-level unit of Nanhai District (440605).
pub(crate) struct Town {
    /// 9-digit township code.
    pub(crate) code: u32,
    pub(crate) name: &'static str,
    /// Centre longitude / latitude and the half-extent of its area, in degrees.
    pub(crate) lon: f64,
    pub(crate) lat: f64,
    pub(crate) spread: f64,
    /// Share of the district's residents.
    pub(crate) weight: f64,
}

/// Ordered by code, so addresses (town code + sequence) come out sorted.
pub(crate) const TOWNS: &[Town] = &[
    Town {
        code: 440605011,
        name: "桂城街道",
        lon: 113.15,
        lat: 23.03,
        spread: 0.04,
        weight: 0.24,
    },
    Town {
        code: 440605121,
        name: "九江镇",
        lon: 112.99,
        lat: 22.86,
        spread: 0.035,
        weight: 0.09,
    },
    Town {
        code: 440605122,
        name: "西樵镇",
        lon: 112.96,
        lat: 22.94,
        spread: 0.04,
        weight: 0.09,
    },
    Town {
        code: 440605123,
        name: "丹灶镇",
        lon: 112.92,
        lat: 23.04,
        spread: 0.04,
        weight: 0.09,
    },
    Town {
        code: 440605124,
        name: "狮山镇",
        lon: 113.01,
        lat: 23.13,
        spread: 0.06,
        weight: 0.19,
    },
    Town {
        code: 440605125,
        name: "大沥镇",
        lon: 113.11,
        lat: 23.11,
        spread: 0.035,
        weight: 0.19,
    },
    Town {
        code: 440605126,
        name: "里水镇",
        lon: 113.15,
        lat: 23.21,
        spread: 0.05,
        weight: 0.11,
    },
];

/// District extent (FACTS.md): every coordinate is clamped inside it.
pub(crate) const LON_RANGE: (f64, f64) = (112.83, 113.27);
pub(crate) const LAT_RANGE: (f64, f64) = (22.82, 23.31);

/// One row of `map.addresses`.
pub(crate) struct Address {
    pub(crate) id: String,
    pub(crate) full: String,
    pub(crate) town: &'static str,
    pub(crate) community: String,
    pub(crate) lon: f64,
    pub(crate) lat: f64,
    pub(crate) grid: String,
}

/// The address space: how many addresses each town has.
pub(crate) struct AddressSpace {
    seed: u64,
    /// First global index of each town, plus the total at the end.
    starts: Vec<u64>,
}

impl AddressSpace {
    pub(crate) fn new(seed: u64, total: u64) -> Self {
        let weights: Vec<f64> = TOWNS.iter().map(|t| t.weight).collect();
        let mut starts = vec![0];
        for n in apportion(total, &weights) {
            starts.push(starts[starts.len() - 1] + n);
        }
        Self { seed, starts }
    }

    pub(crate) fn len(&self) -> u64 {
        self.starts[self.starts.len() - 1]
    }

    /// The address with global index `idx` (< len). Indexes ascend with address ids.
    pub(crate) fn get(&self, idx: u64) -> Address {
        let t = self.starts.partition_point(|s| *s <= idx) - 1;
        let town = &TOWNS[t];
        let seq = idx - self.starts[t] + 1;
        let mut r = Rng::new(mix(self.seed ^ mix(idx.wrapping_add(0xA11CE))));
        // Communities of a town are stable: 24 per town, chosen by town and slot.
        let slot = r.below(24);
        let community = format!(
            "{}{}",
            COMMUNITY_ROOTS[((t as u64 * 7 + slot * 5) % COMMUNITY_ROOTS.len() as u64) as usize],
            if slot.is_multiple_of(3) {
                "村"
            } else {
                "社区"
            }
        );
        let road = r.pick(ROADS);
        let number = r.range(1, 388);
        let building = r.range(1, 30);
        let room = r.range(1, 33) * 100 + r.range(1, 8);
        let lon = (town.lon + (r.unit() * 2.0 - 1.0) * town.spread).clamp(LON_RANGE.0, LON_RANGE.1);
        let lat = (town.lat + (r.unit() * 2.0 - 1.0) * town.spread).clamp(LAT_RANGE.0, LAT_RANGE.1);
        // 500 m grid cells (about 0.005 degrees) numbered from the district's south-west corner.
        let gx = ((lon - LON_RANGE.0) / 0.005) as u32;
        let gy = ((lat - LAT_RANGE.0) / 0.005) as u32;
        Address {
            id: format!("{}{seq:08}", town.code),
            full: format!(
                "广东省佛山市南海区{}{}{}{}号{}座{}",
                town.name, community, road, number, building, room
            ),
            town: town.name,
            community,
            lon: (lon * 1e6).round() / 1e6,
            lat: (lat * 1e6).round() / 1e6,
            grid: format!("NH{}-{gx:03}{gy:03}", t + 1),
        }
    }
}
