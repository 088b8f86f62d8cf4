//! The guest side: SSH (configuration, first contact, commands), the
//! provisioners that run over it, and Ansible's inventory.

pub mod ansible;
pub mod provisioner;
pub mod ssh;
