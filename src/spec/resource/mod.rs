//! Spec resources, one file each (as goss keeps them): a resource type
//! owns its attributes, the shell that gathers its facts in the one
//! script a machine's checks compile into, and how those facts are read.
//! A new resource type is a new file here and a line in [`of`].

pub mod addr;
mod command;
mod dns;
mod docker;
mod file;
mod group;
mod http;
mod interface;
mod kernel_module;
mod kernel_param;
mod mount;
mod package;
pub mod port;
mod process;
mod service;
mod user;

mod common;

pub use common::{AttrType, Resource};

use super::check::Kind;

/// The resource of a kind.
pub fn of(kind: Kind) -> &'static dyn Resource {
    match kind {
        Kind::Package => &package::Package,
        Kind::Service => &service::Service,
        Kind::Port => &port::Port,
        Kind::File => &file::File,
        Kind::Command => &command::Command,
        Kind::User => &user::User,
        Kind::Group => &group::Group,
        Kind::Process => &process::Process,
        Kind::KernelParam => &kernel_param::KernelParam,
        Kind::KernelModule => &kernel_module::KernelModule,
        Kind::Mount => &mount::Mount,
        Kind::Http => &http::Http,
        Kind::Dns => &dns::Dns,
        Kind::Addr => &addr::Addr,
        Kind::Interface => &interface::Interface,
        Kind::DockerContainer => &docker::DockerContainer,
        Kind::DockerImage => &docker::DockerImage,
    }
}

/// Every resource's kind is the one it is registered under.
#[cfg(test)]
#[test]
fn the_registry_is_consistent() {
    for kind in Kind::ALL {
        let r = of(*kind);
        assert_eq!(Kind::from_name(kind.name()), Some(*kind));
        assert!(!r.attributes().is_empty());
        for a in r.recorded() {
            assert!(
                r.attributes().iter().any(|(n, _)| n == a),
                "{}: records `{a}`, not an attribute",
                kind.name()
            );
        }
    }
}
