//! Placeholder until the acr client lands in this commit series.

use super::{MintContext, MintError, Minted};

/// Mints a acr token.
pub async fn mint(
    spec: &crate::config::token::AcrSpec,
    cx: &MintContext<'_>,
) -> Result<Minted, MintError> {
    let _ = (spec, cx);
    Err(MintError::Config("acr minting is not built yet".into()))
}
