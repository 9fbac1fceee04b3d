//! The wrappers that count nesting levels and cap size hints: a deserializer, and every
//! visitor, seed and access it hands out.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, Visitor};

use super::{Error, State, LEFT};

/// Wraps a deserializer.
pub(super) struct Guard<'s, D> {
    pub(super) inner: D,
    pub(super) state: &'s State,
}

/// Wraps a visitor; counts the levels.
struct GuardVisitor<'s, V> {
    inner: V,
    state: &'s State,
}

/// Wraps a seed.
struct GuardSeed<'s, S> {
    inner: S,
    state: &'s State,
}

/// Wraps an `EnumAccess` or `VariantAccess`.
struct GuardAccess<'s, A> {
    inner: A,
    state: &'s State,
}

/// Wraps a `SeqAccess` or `MapAccess`: caps its size hint and keeps its promise in
/// [`State::promised`] while it is open.
struct GuardCollection<'s, A> {
    inner: A,
    state: &'s State,
    /// The capped size hint.
    hint: Option<usize>,
    /// Elements (or entries) started so far.
    started: usize,
    /// The bytes of input left when the last element started.
    left: usize,
    /// Elements promised after the one being decoded, counted in [`State::promised`].
    promised: usize,
}

impl<'s, A> GuardCollection<'s, A> {
    fn new(inner: A, claimed: Option<usize>, state: &'s State) -> Self {
        let mut collection = Self {
            inner,
            state,
            hint: state.cap(claimed),
            started: 0,
            left: 0,
            promised: 0,
        };
        collection.promise();
        collection
    }

    /// Records that the next element starts; fails if the last one took no bytes and too many
    /// such have been taken.
    fn start<E>(&mut self) -> Result<(), Error<E>> {
        let left = LEFT.with(std::cell::Cell::get);
        if self.started > 0 && left == self.left {
            self.state.took_nothing()?;
        }
        self.left = left;
        self.started = self.started.saturating_add(1);
        self.promise();
        Ok(())
    }

    /// Brings this collection's share of [`State::promised`] up to date.
    fn promise(&mut self) {
        let now = self.hint.unwrap_or(0).saturating_sub(self.started);
        let others = self.state.promised.get().saturating_sub(self.promised);
        self.state.promised.set(others.saturating_add(now));
        self.promised = now;
    }

    fn seed<S>(&self, inner: S) -> GuardSeed<'s, S> {
        GuardSeed {
            inner,
            state: self.state,
        }
    }
}

impl<A> Drop for GuardCollection<'_, A> {
    fn drop(&mut self) {
        let total = self.state.promised.get();
        self.state.promised.set(total.saturating_sub(self.promised));
    }
}

macro_rules! forward_deserialize {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, Self::Error> {
            let state = self.state;
            self.inner
                .$method($($arg,)* GuardVisitor { inner: visitor, state })
                .map_err(|e| state.recover(e))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Guard<'_, D> {
    type Error = Error<D::Error>;

    forward_deserialize! {
        deserialize_any(); deserialize_bool(); deserialize_i8(); deserialize_i16();
        deserialize_i32(); deserialize_i64(); deserialize_i128(); deserialize_u8();
        deserialize_u16(); deserialize_u32(); deserialize_u64(); deserialize_u128();
        deserialize_f32(); deserialize_f64(); deserialize_char(); deserialize_str();
        deserialize_string(); deserialize_bytes(); deserialize_byte_buf(); deserialize_option();
        deserialize_unit(); deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str); deserialize_seq();
        deserialize_tuple(len: usize); deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier(); deserialize_ignored_any();
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

macro_rules! forward_visit {
    ($($method:ident($ty:ty);)*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for GuardVisitor<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit! {
        visit_bool(bool); visit_i8(i8); visit_i16(i16); visit_i32(i32); visit_i64(i64);
        visit_i128(i128); visit_u8(u8); visit_u16(u16); visit_u32(u32); visit_u64(u64);
        visit_u128(u128); visit_f32(f32); visit_f64(f64); visit_char(char); visit_str(&str);
        visit_borrowed_str(&'de str); visit_string(String); visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]); visit_byte_buf(Vec<u8>);
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, inner: D) -> Result<V::Value, D::Error> {
        let state = self.state;
        state.nest(|| self.inner.visit_some(Guard { inner, state }))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, inner: D) -> Result<V::Value, D::Error> {
        let state = self.state;
        state.nest(|| self.inner.visit_newtype_struct(Guard { inner, state }))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, inner: A) -> Result<V::Value, A::Error> {
        let state = self.state;
        state.nest(|| {
            let claimed = inner.size_hint();
            self.inner
                .visit_seq(GuardCollection::new(inner, claimed, state))
        })
    }

    fn visit_map<A: de::MapAccess<'de>>(self, inner: A) -> Result<V::Value, A::Error> {
        let state = self.state;
        state.nest(|| {
            let claimed = inner.size_hint();
            self.inner
                .visit_map(GuardCollection::new(inner, claimed, state))
        })
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, inner: A) -> Result<V::Value, A::Error> {
        let state = self.state;
        state.nest(|| self.inner.visit_enum(GuardAccess { inner, state }))
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for GuardSeed<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, inner: D) -> Result<S::Value, D::Error> {
        let state = self.state;
        self.inner
            .deserialize(Guard { inner, state })
            .map_err(|e| state.smuggle(e))
    }
}

impl<'s, A> GuardAccess<'s, A> {
    fn seed<S>(&self, inner: S) -> GuardSeed<'s, S> {
        GuardSeed {
            inner,
            state: self.state,
        }
    }

    fn visitor<V>(&self, inner: V) -> GuardVisitor<'s, V> {
        GuardVisitor {
            inner,
            state: self.state,
        }
    }
}

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for GuardCollection<'_, A> {
    type Error = Error<A::Error>;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Self::Error> {
        self.start()?;
        let seed = self.seed(seed);
        self.inner
            .next_element_seed(seed)
            .map_err(|e| self.state.recover(e))
    }

    fn size_hint(&self) -> Option<usize> {
        self.hint
    }
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for GuardCollection<'_, A> {
    type Error = Error<A::Error>;

    fn next_key_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Self::Error> {
        self.start()?;
        let seed = self.seed(seed);
        self.inner
            .next_key_seed(seed)
            .map_err(|e| self.state.recover(e))
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<S::Value, Self::Error> {
        let seed = self.seed(seed);
        self.inner
            .next_value_seed(seed)
            .map_err(|e| self.state.recover(e))
    }

    fn size_hint(&self) -> Option<usize> {
        self.hint
    }
}

impl<'de, 's, A: de::EnumAccess<'de>> de::EnumAccess<'de> for GuardAccess<'s, A> {
    type Error = Error<A::Error>;
    type Variant = GuardAccess<'s, A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), Self::Error> {
        let (seed, state) = (self.seed(seed), self.state);
        match self.inner.variant_seed(seed) {
            Ok((value, inner)) => Ok((value, GuardAccess { inner, state })),
            Err(e) => Err(state.recover(e)),
        }
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for GuardAccess<'_, A> {
    type Error = Error<A::Error>;

    fn unit_variant(self) -> Result<(), Self::Error> {
        self.inner.unit_variant().map_err(|e| self.state.recover(e))
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<S::Value, Self::Error> {
        let seed = self.seed(seed);
        self.inner
            .newtype_variant_seed(seed)
            .map_err(|e| self.state.recover(e))
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let visitor = self.visitor(visitor);
        self.inner
            .tuple_variant(len, visitor)
            .map_err(|e| self.state.recover(e))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let visitor = self.visitor(visitor);
        self.inner
            .struct_variant(fields, visitor)
            .map_err(|e| self.state.recover(e))
    }
}
