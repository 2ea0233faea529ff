//! The Arrakis operator: API types for `arrakis.dev/v1alpha1` and, in later issues, their reconcilers.

pub mod api;
pub mod crd;
