//! Integration suite of the Bitbucket simulator: real git, real HTTP, real webhooks.

mod admin;
mod changes;
mod commits;
mod content;
mod gate;
mod helpers;
mod openapi;
mod pushes;
mod webhooks;
