//! pull-secret-injector: decides which registry pull secrets a Pod or ServiceAccount needs.
