//! The statement being routed, as instantiating reads it: its text and fingerprint, the
//! values bound to its `?` placeholders, and the ids a sequence fills in; [`Input::value`]
//! reads a literal slot as a sharding value.

use std::borrow::Cow;

use sql::{Fingerprint, LiteralKind, LiteralValue};

use crate::plan::Param;

/// The statement being routed: its text, fingerprint, bound parameters, and
/// the ids a sequence fills in.
#[derive(Clone, Copy)]
pub(crate) struct Input<'a> {
    pub sql: &'a str,
    pub fp: &'a Fingerprint,
    pub params: &'a [Param],
    pub ids: Ids<'a>,
    /// Parameters are written into the physical statements as literals rather than `?`
    /// (the statements of a row move, which run as text).
    pub inline_params: bool,
}

/// A sharding value read from the statement.
#[derive(Debug)]
pub(crate) enum Val<'a> {
    Int(i64),
    UInt(u64),
    Str(Cow<'a, str>),
    /// A DOUBLE parameter (mysql2 sends every JavaScript number as one).
    Double(f64),
    /// A literal number with a fraction or an exponent, as written.
    Number(&'a str),
    Null,
    /// Not known yet: a `?` without a bound value, or an id a sequence has
    /// not given yet (COM_STMT_PREPARE).
    Unbound,
    /// Why the value cannot be used to route.
    Unroutable(String),
}

impl<'a> Input<'a> {
    /// Whether this is COM_STMT_PREPARE: parameters are not bound yet.
    pub(crate) fn preparing(&self) -> bool {
        matches!(self.ids, Ids::Prepare)
    }

    /// The statement's `?` placeholders; ids written as parameters are numbered after them.
    pub(crate) fn placeholders(&self) -> usize {
        self.fp
            .literals
            .iter()
            .filter(|l| matches!(l.kind, LiteralKind::Placeholder(_)))
            .count()
    }

    /// The sharding value of literal slot `slot` (or of the parameter bound to it).
    pub(crate) fn value(&self, slot: usize) -> Val<'a> {
        let Some(lit) = self.fp.literals.get(slot) else {
            return Val::Unroutable("a missing literal".into());
        };
        match lit.value(self.sql) {
            LiteralValue::Int(v) => Val::Int(v),
            LiteralValue::UInt(v) => Val::UInt(v),
            LiteralValue::Str(s) => Val::Str(s),
            LiteralValue::Number(t) => Val::Number(t),
            LiteralValue::Binary(t) => Val::Unroutable(format!("the binary literal {t}")),
            LiteralValue::Placeholder(k) => match self.params.get(k) {
                None => Val::Unbound,
                Some(Param::Null) => Val::Null,
                Some(Param::Int(v)) => Val::Int(*v),
                Some(Param::UInt(v)) => Val::UInt(*v),
                Some(Param::Double(v)) => Val::Double(*v),
                Some(Param::Bytes(b)) => match std::str::from_utf8(b) {
                    Ok(s) => Val::Str(Cow::Owned(s.to_owned())),
                    Err(_) => Val::Unroutable("a parameter that is not UTF-8 text".into()),
                },
            },
        }
    }
}

/// How ids are written into the physical statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdStyle {
    /// As integer literals (COM_QUERY text).
    Literal,
    /// As `?` placeholders numbered after the statement's own: id `i` is
    /// parameter `placeholders + i` in [`crate::Target::params`], and the
    /// executor appends the ids (unsigned BIGINT) to the bound values. The
    /// physical text is then the same at every execution, so each backend
    /// prepares it once.
    Param,
}

/// The ids the caller brings for one statement.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Ids<'a> {
    /// None: a statement that needs ids fails with [`crate::RouteError::IdsNeeded`].
    None,
    /// One id per row that needs one, in row order.
    Given(&'a [u64], IdStyle),
    /// For COM_STMT_PREPARE: ids are not known before EXECUTE. Rows that need
    /// one are routed like unknown values and their marker is written `DEFAULT`.
    Prepare,
}
