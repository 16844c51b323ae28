//! gar: the provider client's tests (in progress in this commit series).
