//! Placeholder until the gar client lands in this commit series.

use super::{MintContext, MintError, Minted};

/// Mints a gar token.
pub async fn mint(
    spec: &crate::config::token::GarSpec,
    cx: &MintContext<'_>,
) -> Result<Minted, MintError> {
    let _ = (spec, cx);
    Err(MintError::Config("gar minting is not built yet".into()))
}
