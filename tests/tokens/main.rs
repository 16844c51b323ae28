//! The token providers' clients against local servers that speak each provider's public
//! protocol: moto for ECR and STS, strict fakes of Google's OAuth2 token endpoint and of ACR's
//! `/oauth2/exchange`.

mod acr;
mod ecr;
#[path = "../common/token_fakes/mod.rs"]
mod fakes;
mod gar;
mod refresh;
