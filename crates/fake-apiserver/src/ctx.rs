//! Who makes a request, and the options that change what admission sees: what the verbs in
//! `api.rs` take, and what the webhooks in `admission.rs` are told.

use super::rbac::UserInfo;

/// Who asks, and the options that change what admission sees.
pub(crate) struct Ctx {
    pub user: UserInfo,
    pub dry_run: bool,
    pub field_manager: Option<String>,
    /// Admission warnings, returned to HTTP clients as `Warning` headers.
    pub warnings: Vec<String>,
}

impl Ctx {
    pub fn new(user: UserInfo, dry_run: bool) -> Self {
        Ctx {
            user,
            dry_run,
            field_manager: None,
            warnings: Vec::new(),
        }
    }
}
