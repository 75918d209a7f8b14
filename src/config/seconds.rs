//! Seconds as written in the file: a number with its bounds in its type.
//!
//! [`Seconds`] is a finite number of seconds in `(0, MAX]`, or `[0, MAX]`
//! when `ZERO` ([`SecondsOrZero`]). Its bounds are declared once, here: the
//! JSON schema (`exclusiveMinimum`/`minimum`, `maximum`), serde (a value
//! outside them does not deserialize) and [`Seconds::duration`] (no
//! `Duration::from_secs_f64` panic, no `Instant` overflow) all read them
//! from the type. `MAX` is whole seconds, one year unless stated.
//!
//! [`WholeSeconds`] is the same for fields that take integers only
//! (`[MIN, MAX]`, both in the type).

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use std::borrow::Cow;
use std::time::Duration;

/// One year: the longest time the file may state (an `Instant` a year
/// from now never overflows).
pub const ONE_YEAR: u32 = 31_536_000;

/// Fractional seconds in `(0, MAX]` (`[0, MAX]` when `ZERO`).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Seconds<const ZERO: bool = false, const MAX: u32 = ONE_YEAR>(f64);

/// Fractional seconds in `[0, one year]`: 0 is allowed (and means "never"
/// or "no wait" where the field says so).
pub type SecondsOrZero = Seconds<true>;

impl<const ZERO: bool, const MAX: u32> Seconds<ZERO, MAX> {
    /// `s` if it is within the bounds.
    pub const fn new(s: f64) -> Option<Self> {
        if s.is_finite() && s <= MAX as f64 && (s > 0.0 || (ZERO && s == 0.0)) {
            // -0.0 is stored as 0.0.
            Some(Seconds(if s == 0.0 { 0.0 } else { s }))
        } else {
            None
        }
    }

    /// A constant: `const { Seconds::lit(2.0) }` (out of bounds: a compile
    /// error there, as const evaluation fails).
    pub const fn lit(s: f64) -> Self {
        match Self::new(s) {
            Some(v) => v,
            None => panic!("seconds out of bounds"),
        }
    }

    pub const fn get(self) -> f64 {
        self.0
    }

    /// As a `Duration` (never panics: the value is within the bounds).
    pub fn duration(self) -> Duration {
        Duration::try_from_secs_f64(self.0).unwrap_or_default()
    }

    fn expected() -> String {
        let low = if ZERO { "[0" } else { "(0" };
        format!("seconds in {low}, {MAX}]")
    }
}

impl<const ZERO: bool, const MAX: u32> Serialize for Seconds<ZERO, MAX> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0)
    }
}

impl<'de, const ZERO: bool, const MAX: u32> Deserialize<'de> for Seconds<ZERO, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = f64::deserialize(d)?;
        Self::new(s).ok_or_else(|| {
            de::Error::invalid_value(de::Unexpected::Float(s), &Self::expected().as_str())
        })
    }
}

impl<const ZERO: bool, const MAX: u32> JsonSchema for Seconds<ZERO, MAX> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        format!("Seconds{}{MAX}", if ZERO { "OrZero" } else { "" }).into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let mut s = json_schema!({ "type": "number", "format": "double", "maximum": MAX });
        s.insert(
            (if ZERO { "minimum" } else { "exclusiveMinimum" }).into(),
            0.into(),
        );
        s
    }
}

/// Whole seconds in `[MIN, MAX]` (fields that take integers only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct WholeSeconds<const MIN: u64, const MAX: u64>(u64);

impl<const MIN: u64, const MAX: u64> WholeSeconds<MIN, MAX> {
    /// `s` if it is within the bounds.
    pub const fn new(s: u64) -> Option<Self> {
        if s >= MIN && s <= MAX {
            Some(WholeSeconds(s))
        } else {
            None
        }
    }

    /// A constant: `const { WholeSeconds::lit(5) }` (out of bounds: a
    /// compile error there).
    pub const fn lit(s: u64) -> Self {
        match Self::new(s) {
            Some(v) => v,
            None => panic!("seconds out of bounds"),
        }
    }

    pub const fn get(self) -> u64 {
        self.0
    }

    pub const fn duration(self) -> Duration {
        Duration::from_secs(self.0)
    }
}

impl<const MIN: u64, const MAX: u64> Serialize for WholeSeconds<MIN, MAX> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de, const MIN: u64, const MAX: u64> Deserialize<'de> for WholeSeconds<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = u64::deserialize(d)?;
        Self::new(s).ok_or_else(|| {
            let expected = format!("whole seconds in [{MIN}, {MAX}]");
            de::Error::invalid_value(de::Unexpected::Unsigned(s), &expected.as_str())
        })
    }
}

impl<const MIN: u64, const MAX: u64> JsonSchema for WholeSeconds<MIN, MAX> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        format!("WholeSeconds{MIN}To{MAX}").into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "integer", "format": "uint64", "minimum": MIN, "maximum": MAX })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_hold_for_every_awkward_number() {
        for bad in [
            0.0,
            -0.0,
            -1.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e300,
            31_536_000.5,
        ] {
            assert_eq!(Seconds::<false>::new(bad), None, "{bad}");
        }
        for bad in [-1.0, -1e-300, f64::NAN, f64::INFINITY, 31_536_001.0] {
            assert_eq!(SecondsOrZero::new(bad), None, "{bad}");
        }
        assert_eq!(
            SecondsOrZero::new(-0.0).map(|s| s.duration()),
            Some(Duration::ZERO)
        );
        assert_eq!(
            Seconds::<false>::new(f64::MIN_POSITIVE).map(|s| s.duration()),
            Some(Duration::ZERO)
        );
        assert_eq!(
            Seconds::<false>::lit(0.25).duration(),
            Duration::from_millis(250)
        );
        assert_eq!(
            Seconds::<false>::lit(31_536_000.0).duration(),
            Duration::from_secs(31_536_000)
        );
    }

    #[test]
    fn serde_takes_integers_and_fractions_and_refuses_the_rest() {
        let de = |v: serde_json::Value| serde_json::from_value::<Seconds>(v).map(|s| s.get());
        assert_eq!(de(serde_json::json!(5)).ok(), Some(5.0));
        assert_eq!(de(serde_json::json!(0.2)).ok(), Some(0.2));
        let e = de(serde_json::json!(0)).unwrap_err().to_string();
        assert!(e.contains("expected seconds in (0, 31536000]"), "{e}");
        assert!(de(serde_json::json!(-3)).is_err());
        assert!(de(serde_json::json!("5")).is_err());
        let z = serde_json::from_value::<SecondsOrZero>(serde_json::json!(0)).unwrap();
        assert_eq!(serde_json::to_value(z).unwrap(), serde_json::json!(0.0));
    }

    #[test]
    fn whole_seconds_keep_their_bounds() {
        type W = WholeSeconds<1, 3600>;
        let de = |v: serde_json::Value| serde_json::from_value::<W>(v).map(W::get);
        assert_eq!(de(serde_json::json!(1)).ok(), Some(1));
        assert_eq!(de(serde_json::json!(3600)).ok(), Some(3600));
        let e = de(serde_json::json!(0)).unwrap_err().to_string();
        assert!(e.contains("expected whole seconds in [1, 3600]"), "{e}");
        assert!(de(serde_json::json!(3601)).is_err());
        assert!(de(serde_json::json!(1.5)).is_err());
        assert_eq!(W::lit(2).duration(), Duration::from_secs(2));
        let s = serde_json::to_value(schemars::schema_for!(W)).unwrap();
        assert_eq!((&s["minimum"], &s["maximum"]), (&1.into(), &3600.into()));
    }

    #[test]
    fn the_schema_states_the_same_bounds() {
        let s = serde_json::to_value(schemars::schema_for!(Seconds)).unwrap();
        assert_eq!(s["exclusiveMinimum"], 0);
        assert_eq!(s["maximum"], 31_536_000);
        let z = serde_json::to_value(schemars::schema_for!(SecondsOrZero)).unwrap();
        assert_eq!(z["minimum"], 0);
        assert!(z.get("exclusiveMinimum").is_none());
    }
}
