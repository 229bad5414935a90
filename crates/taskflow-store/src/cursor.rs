//! Opaque pagination cursors: the sort position of the last item of a page.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};

use crate::{
    StoreError,
    query::{Order, SortBy},
};

/// The sort key of the last item of a page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CursorKey {
    I64(i64),
    Text(String),
}

/// Where the next page starts. Encoded as URL-safe base64 JSON; bound to its sort and order.
/// The use cases sign the encoding before it leaves the server, so a client cannot make one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    #[serde(rename = "s")]
    pub sort: SortBy,
    #[serde(rename = "o")]
    pub order: Order,
    #[serde(rename = "f")]
    pub flag: i64,
    #[serde(rename = "k")]
    pub key: CursorKey,
    #[serde(rename = "n")]
    pub number: i64,
}

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Decodes a cursor and checks that it belongs to a query with this sort and order.
    pub fn decode(raw: &str, sort: SortBy, order: Order) -> Result<Self, StoreError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(raw.trim())
            .map_err(|_| StoreError::InvalidCursor("not a cursor this server issued".into()))?;
        let c: Cursor = serde_json::from_slice(&bytes)
            .map_err(|_| StoreError::InvalidCursor("not a cursor this server issued".into()))?;
        if c.sort != sort || c.order != order {
            return Err(StoreError::InvalidCursor(
                "the cursor belongs to a different sort or order; start again without it".into(),
            ));
        }
        // The key has the type of the sort's column (a database refuses to compare others).
        let key_fits = matches!(
            (&c.key, c.sort),
            (CursorKey::Text(_), SortBy::Title)
                | (
                    CursorKey::I64(_),
                    SortBy::Due | SortBy::Priority | SortBy::Created
                )
        );
        if !key_fits || !(0..=1).contains(&c.flag) {
            return Err(StoreError::InvalidCursor(
                "not a cursor this server issued".into(),
            ));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips() {
        let c = Cursor {
            sort: SortBy::Title,
            order: Order::Desc,
            flag: 0,
            key: CursorKey::Text("abc".into()),
            number: 9,
        };
        assert_eq!(
            Cursor::decode(&c.encode(), SortBy::Title, Order::Desc).expect("valid"),
            c
        );
    }

    #[test]
    fn a_cursor_of_another_sort_is_rejected() {
        let c = Cursor {
            sort: SortBy::Due,
            order: Order::Asc,
            flag: 0,
            key: CursorKey::I64(1),
            number: 1,
        };
        assert!(Cursor::decode(&c.encode(), SortBy::Title, Order::Asc).is_err());
    }

    #[test]
    fn a_key_of_the_wrong_type_for_its_sort_is_rejected() {
        let c = Cursor {
            sort: SortBy::Due,
            order: Order::Asc,
            flag: 0,
            key: CursorKey::Text("x".into()),
            number: 1,
        };
        assert!(Cursor::decode(&c.encode(), SortBy::Due, Order::Asc).is_err());
    }

    #[test]
    fn garbage_is_not_a_cursor() {
        assert!(Cursor::decode("!!!", SortBy::Due, Order::Asc).is_err());
        assert!(Cursor::decode("aGVsbG8", SortBy::Due, Order::Asc).is_err());
    }
}
