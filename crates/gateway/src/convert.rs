//! Conversion between wire messages and domain types. Wire errors name the request field.

use crate::{Error, Result};
use citybrain_catalog::{ColumnManifest, TableEntry, TableManifest};
use citybrain_engine::DataInfo;
use citybrain_proto::v1 as pb;
use citybrain_types::ShareType;

pub(crate) fn share_type_from(v: i32, field: &str) -> Result<ShareType> {
    match pb::ShareType::try_from(v) {
        Ok(pb::ShareType::Unconditional) => Ok(ShareType::Unconditional),
        Ok(pb::ShareType::Conditional) => Ok(ShareType::Conditional),
        Ok(pb::ShareType::NotShared) => Ok(ShareType::NotShared),
        Ok(pb::ShareType::Unspecified) => Err(Error::invalid(field, "is required")),
        Err(_) => Err(Error::invalid(field, format!("unknown value {v}"))),
    }
}

/// The wire value of a share type.
pub fn share_type_to(s: ShareType) -> i32 {
    match s {
        ShareType::Unconditional => pb::ShareType::Unconditional,
        ShareType::Conditional => pb::ShareType::Conditional,
        ShareType::NotShared => pb::ShareType::NotShared,
    }
    .into()
}

fn word<T: std::str::FromStr<Err = citybrain_types::Error>>(s: &str, field: &str) -> Result<T> {
    s.parse::<T>()
        .map_err(|e| Error::invalid(field, e.to_string()))
}

fn opt(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// A steward's wire spec as a manifest (validated afterwards by the catalog).
pub(crate) fn manifest_from(spec: Option<pb::TableSpec>) -> Result<TableManifest> {
    let s = spec.ok_or_else(|| Error::invalid("spec", "is required"))?;
    let provider = s.provider.unwrap_or_default();
    let columns = s
        .columns
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let f = |name: &str| format!("spec.columns[{i}].{name}");
            Ok(ColumnManifest {
                data_type: word(&c.data_type, &f("data_type"))?,
                share_type: share_type_from(c.share_type, &f("share_type"))?,
                sensitivity: word(&c.sensitivity, &f("sensitivity"))?,
                name: c.name,
                title: c.title,
                description: c.description,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(TableManifest {
        library: word(&s.library, "spec.library")?,
        update_cycle: word(&s.update_cycle, "spec.update_cycle")?,
        share_type: share_type_from(s.share_type, "spec.share_type")?,
        name: s.name,
        resource_code: s.resource_code,
        title: s.title,
        title_en: s.title_en,
        provider_code: provider.code,
        provider_name: provider.name,
        summary: s.r#abstract,
        classification: s.classification,
        key_column: opt(s.key_column),
        share_condition: s.share_condition,
        share_method: s.share_method,
        open_to_public: s.open_to_public,
        open_condition: s.open_condition,
        dataset: opt(s.dataset),
        publish_date: opt(s.publish_date),
        related_resource_codes: s.related_resource_codes,
        columns,
    })
}

/// The wire form of a manifest.
pub fn spec_to(m: &TableManifest) -> pb::TableSpec {
    pb::TableSpec {
        name: m.name.clone(),
        resource_code: m.resource_code.clone(),
        title: m.title.clone(),
        title_en: m.title_en.clone(),
        provider: Some(pb::Department {
            code: m.provider_code.clone(),
            name: m.provider_name.clone(),
        }),
        r#abstract: m.summary.clone(),
        library: m.library.as_str().to_owned(),
        classification: m.classification.clone(),
        key_column: m.key_column.clone().unwrap_or_default(),
        update_cycle: m.update_cycle.as_str().to_owned(),
        share_type: share_type_to(m.share_type),
        share_condition: m.share_condition.clone(),
        share_method: m.share_method.clone(),
        open_to_public: m.open_to_public,
        open_condition: m.open_condition.clone(),
        dataset: m.dataset.clone().unwrap_or_default(),
        publish_date: m.publish_date.clone().unwrap_or_default(),
        related_resource_codes: m.related_resource_codes.clone(),
        columns: m
            .columns
            .iter()
            .map(|c| pb::ColumnSpec {
                name: c.name.clone(),
                title: c.title.clone(),
                data_type: c.data_type.as_str().to_owned(),
                share_type: share_type_to(c.share_type),
                sensitivity: c.sensitivity.as_str().to_owned(),
                description: c.description.clone(),
            })
            .collect(),
    }
}

/// Where a table's data stands, as the engine found it.
pub(crate) enum DataView {
    None,
    Available(DataInfo),
    Unavailable,
}

pub(crate) fn table_to(e: &TableEntry, data: &DataView) -> pb::Table {
    let (state, records) = match data {
        DataView::None => (pb::DataState::None, 0),
        DataView::Available(info) => (pb::DataState::Available, info.records),
        DataView::Unavailable => (pb::DataState::Unavailable, 0),
    };
    pb::Table {
        spec: Some(spec_to(&e.manifest)),
        status: e.status.as_str().to_owned(),
        deprecation_reason: e.deprecation_reason.clone(),
        version: e.version,
        created_at: e.created_at.clone(),
        updated_at: e.updated_at.clone(),
        data_state: state.into(),
        records,
    }
}

/// Rows of a batch as wire rows of text values (dates as YYYY-MM-DD), appended to `out`.
pub(crate) fn rows_to_wire(b: &arrow::array::RecordBatch, out: &mut Vec<pb::Row>) -> Result<()> {
    use arrow::array::{Array, AsArray};
    let schema = b.schema();
    let texts = b
        .columns()
        .iter()
        .map(|c| arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8))
        .collect::<Result<Vec<_>, _>>()
        .map_err(citybrain_governance::Error::from)?;
    for i in 0..b.num_rows() {
        out.push(pb::Row {
            values: texts
                .iter()
                .zip(schema.fields())
                .map(|(t, f)| {
                    let s = t.as_string::<i32>();
                    pb::Value {
                        column: f.name().clone(),
                        value: if s.is_null(i) {
                            String::new()
                        } else {
                            s.value(i).to_owned()
                        },
                        is_null: s.is_null(i),
                    }
                })
                .collect(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_round_trips_and_names_bad_fields() {
        let mut spec = pb::TableSpec {
            name: "hrss.pension".into(),
            resource_code: "D14-0001".into(),
            title: "t".into(),
            title_en: "t".into(),
            provider: Some(pb::Department {
                code: "hrss".into(),
                name: "HRSS".into(),
            }),
            r#abstract: "a".into(),
            library: "department".into(),
            update_cycle: "monthly".into(),
            share_type: pb::ShareType::Unconditional.into(),
            columns: vec![pb::ColumnSpec {
                name: "id_number".into(),
                title: "ID".into(),
                data_type: "string".into(),
                share_type: pb::ShareType::Unconditional.into(),
                sensitivity: "sensitive".into(),
                description: String::new(),
            }],
            ..Default::default()
        };
        let m = manifest_from(Some(spec.clone())).unwrap();
        assert_eq!(spec_to(&m), spec);
        spec.columns[0].data_type = "text".into();
        let err = manifest_from(Some(spec.clone())).unwrap_err().to_string();
        assert!(err.starts_with("spec.columns[0].data_type:"), "{err}");
        spec.columns[0].data_type = "string".into();
        spec.share_type = 0;
        let err = manifest_from(Some(spec)).unwrap_err().to_string();
        assert!(err.starts_with("spec.share_type: is required"), "{err}");
    }
}
