//! The broker's API, page and command-line tests against a real broker over HTTPS with a
//! temporary SQLite file. One test binary for the crate: each binary links the whole dependency
//! tree, so one per file made CI link it twenty times. A file here is a module; `common` is the
//! shared harness.

mod common;

mod accounts;
mod acme;
mod admin_ops;
mod bounds;
mod cli;
mod connections;
mod cutoffs;
mod durability;
mod edge_admin;
mod edges;
mod grants;
mod guessing;
mod headers;
mod invites;
mod lease_keys_at_rest;
mod leases;
mod lockout;
mod login;
mod openapi;
mod own_leases;
mod pins;
mod reports;
mod robustness;
mod web;
