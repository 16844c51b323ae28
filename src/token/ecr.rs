//! Placeholder until the ecr client lands in this commit series.

use super::{MintContext, MintError, Minted};

/// Mints a ecr token.
pub async fn mint(
    spec: &crate::config::token::EcrSpec,
    cx: &MintContext<'_>,
) -> Result<Minted, MintError> {
    let _ = (spec, cx);
    Err(MintError::Config("ecr minting is not built yet".into()))
}
