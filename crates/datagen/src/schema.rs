//! The tables the generator writes: name, dataset path, sort key and columns.

use crate::writer::{ColumnDef, col, nullable};
use arrow::datatypes::DataType::{Date32, Float64, Utf8};

/// A generated table.
pub struct TableDef {
    /// Catalog name (`schema.table`).
    pub name: &'static str,
    /// Dataset path under the output root.
    pub dataset: &'static str,
    /// Column the rows are sorted and looked up by.
    pub key: &'static str,
    /// Columns in file order.
    pub columns: Vec<ColumnDef>,
}

/// `population.residents`: one row per resident, sorted by ID number.
pub fn residents() -> TableDef {
    TableDef {
        name: "population.residents",
        dataset: "population/residents",
        key: "id_number",
        columns: vec![
            col("id_number", Utf8, false),
            col("name", Utf8, false),
            col("gender", Utf8, true),
            col("birth_date", Date32, false),
            col("ethnicity", Utf8, true),
            col("phone", Utf8, false),
            col("address_id", Utf8, false),
            col("household_address", Utf8, false),
            col("town", Utf8, true),
            col("registration_type", Utf8, true),
        ],
    }
}

/// `legal.entities`: one row per market entity, sorted by credit code.
pub fn entities() -> TableDef {
    TableDef {
        name: "legal.entities",
        dataset: "legal/entities",
        key: "credit_code",
        columns: vec![
            col("credit_code", Utf8, false),
            col("name", Utf8, false),
            col("entity_type", Utf8, true),
            col("legal_rep_id", Utf8, false),
            col("registered_capital", Float64, false),
            col("established_date", Date32, false),
            col("industry", Utf8, true),
            col("status", Utf8, true),
            col("address_id", Utf8, false),
            col("address", Utf8, false),
            col("town", Utf8, true),
        ],
    }
}

/// `map.addresses`: standard addresses with coordinates, sorted by address id.
pub fn addresses() -> TableDef {
    TableDef {
        name: "map.addresses",
        dataset: "map/addresses",
        key: "address_id",
        columns: vec![
            col("address_id", Utf8, false),
            col("full_address", Utf8, false),
            col("town", Utf8, true),
            col("community", Utf8, true),
            col("longitude", Float64, false),
            col("latitude", Float64, false),
            col("grid_id", Utf8, true),
        ],
    }
}

/// `hrss.social_insurance`: enrolments per insured person and type, sorted by ID number.
pub fn social_insurance() -> TableDef {
    TableDef {
        name: "hrss.social_insurance",
        dataset: "hrss/social_insurance",
        key: "id_number",
        columns: vec![
            col("id_number", Utf8, false),
            col("insurance_type", Utf8, true),
            col("status", Utf8, true),
            col("start_date", Date32, false),
            nullable(col("employer_credit_code", Utf8, false)),
            col("monthly_base", Float64, false),
        ],
    }
}

/// `gov.e_licences`: electronic licences of residents, sorted by holder ID number.
pub fn e_licences() -> TableDef {
    TableDef {
        name: "gov.e_licences",
        dataset: "gov/e_licences",
        key: "holder_id",
        columns: vec![
            col("holder_id", Utf8, false),
            col("licence_no", Utf8, false),
            col("licence_type", Utf8, true),
            col("holder_name", Utf8, false),
            col("issue_date", Date32, false),
            nullable(col("valid_until", Date32, false)),
            col("issuing_authority", Utf8, true),
            col("status", Utf8, true),
        ],
    }
}

/// `market.business_licences`: one business licence per entity, sorted by credit code.
pub fn business_licences() -> TableDef {
    TableDef {
        name: "market.business_licences",
        dataset: "market/business_licences",
        key: "credit_code",
        columns: vec![
            col("credit_code", Utf8, false),
            col("entity_name", Utf8, false),
            col("licence_no", Utf8, false),
            col("business_scope", Utf8, false),
            col("issue_date", Date32, false),
            nullable(col("valid_until", Date32, false)),
            col("registration_authority", Utf8, true),
            col("status", Utf8, true),
        ],
    }
}

/// Every generated table.
pub fn all() -> Vec<TableDef> {
    vec![
        residents(),
        entities(),
        addresses(),
        social_insurance(),
        e_licences(),
        business_licences(),
    ]
}
