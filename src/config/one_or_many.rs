//! Fields written either as one string or as a list of strings
//! (`audience: api` or `audience: [api, admin]`), read as a list.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};

/// One string or a list of strings (the schema says both).
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// `deserialize_with` for an `Option<Vec<String>>` written as [`OneOrMany`].
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    Ok(Option::<OneOrMany>::deserialize(d)?.map(|v| match v {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    }))
}
