//! kubelet's matching, pure: image references as the container runtime parses them, auths keys
//! as kubelet's keyring parses them (through Go's `net/url`), the glob syntax of both, and pull
//! secret contents as kubelet reads them.

pub mod dockerconfig;
pub mod glob;
pub mod gourl;
pub mod image;
pub mod keyring;
