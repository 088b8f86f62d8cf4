#!/usr/bin/env bash
# Times the same 50 checks against one running machine with `env verify`
# (one SSH round trip: one compiled script) and with serverspec (Debian's
# ruby-serverspec over SSH: one command per check). TCG, 2 vCPUs, 1 GiB.
# Usage: bench/spec.sh   (RUNS=3, BOX=FILE.box, ENV_BIN=...; needs ruby-serverspec)
source "$(dirname "$0")/lib.sh"
export ENV_ACCEL=tcg
command -v rspec >/dev/null || { echo "install ruby-serverspec (apt-get install ruby-serverspec)" >&2; exit 1; }
setup_home
project=$(mktemp -d)
cd "$project"

files=(/etc/passwd /etc/group /etc/hostname /etc/hosts /etc/os-release /etc/ssh/sshd_config
       /etc/sudoers /bin/sh /usr/bin/python3 /etc/shadow /etc/resolv.conf /etc/fstab /etc/motd /etc/issue /etc/profile)
packages=(openssh-server sudo python3 rsync procps iproute2 e2fsprogs zstd ca-certificates acpid)
services=(ssh systemd-journald systemd-udevd qemu-guest-agent acpid)
users=(root vagrant daemon nobody sys)
groups=(root sudo adm vagrant users)
commands=("true" "uname -a" "id" "hostname" "ls /")
params=(kernel.ostype kernel.pid_max)
interfaces=(eth0 lo)

# The env spec: 50 checks, one attribute each.
{
  for f in "${files[@]}"; do printf '[file."%s"]\nexists = true\n\n' "$f"; done
  for p in "${packages[@]}"; do printf '[package.%s]\ninstalled = true\n\n' "$p"; done
  for s in "${services[@]}"; do printf '[service.%s]\nrunning = true\n\n' "$s"; done
  for u in "${users[@]}"; do printf '[user.%s]\nexists = true\n\n' "$u"; done
  for g in "${groups[@]}"; do printf '[group.%s]\nexists = true\n\n' "$g"; done
  for c in "${commands[@]}"; do printf '[command."%s"]\nexit_status = 0\n\n' "$c"; done
  printf '[port."tcp:22"]\nlistening = true\n\n'
  printf '[kernel_param."kernel.ostype"]\nvalue = "Linux"\n\n[kernel_param."kernel.pid_max"]\nvalue = "/^[0-9]+$/"\n\n'
  for i in "${interfaces[@]}"; do printf '[interface.%s]\nexists = true\n\n' "$i"; done
} > spec.toml
printf '[defaults]\nbox = "debian-12"\ncpus = 2\nmemory = "1G"\nspecs = ["spec.toml"]\n' > Envfile

# The same 50 checks for serverspec, over SSH with env's ssh-config.
mkdir -p spec/machine
cat > spec/spec_helper.rb <<'RUBY'
require 'serverspec'
require 'net/ssh'
set :backend, :ssh
host = 'default'
options = Net::SSH::Config.for(host, [File.expand_path('../ssh_config', __dir__)])
options[:user] ||= 'vagrant'
set :host, options[:host_name] || host
set :ssh_options, options
RUBY
{
  echo "require 'spec_helper'"
  for f in "${files[@]}"; do echo "describe file('$f') do it { should exist } end"; done
  for p in "${packages[@]}"; do echo "describe package('$p') do it { should be_installed } end"; done
  for s in "${services[@]}"; do echo "describe service('$s') do it { should be_running } end"; done
  for u in "${users[@]}"; do echo "describe user('$u') do it { should exist } end"; done
  for g in "${groups[@]}"; do echo "describe group('$g') do it { should exist } end"; done
  for c in "${commands[@]}"; do echo "describe command('$c') do its(:exit_status) { should eq 0 } end"; done
  echo "describe port(22) do it { should be_listening.with('tcp') } end"
  echo "describe linux_kernel_parameter('kernel.ostype') do its(:value) { should eq 'Linux' } end"
  echo "describe linux_kernel_parameter('kernel.pid_max') do its(:value) { should be > 0 } end"
  for i in "${interfaces[@]}"; do echo "describe interface('$i') do it { should exist } end"; done
} > spec/machine/machine_spec.rb

"$ENV_BIN" up >/dev/null 2>&1
# serverspec's net-ssh reads a plain config: no ControlMaster.
"$ENV_BIN" ssh-config | grep -v -i -E 'control(master|path|persist)' | sed 's/^Host .*/Host default/' > ssh_config
"$ENV_BIN" verify >/dev/null || { echo "env verify does not pass:" >&2; "$ENV_BIN" verify >&2; exit 1; }
rspec spec/machine/machine_spec.rb >/dev/null 2>&1 || { echo "serverspec does not pass:" >&2; rspec spec/machine/machine_spec.rb >&2; exit 1; }

env_times=() spec_times=()
for run in $(seq "$RUNS"); do
  t=$(now); "$ENV_BIN" verify >/dev/null; env_times+=("$(elapsed "$t")")
  t=$(now); rspec spec/machine/machine_spec.rb >/dev/null 2>&1; spec_times+=("$(elapsed "$t")")
  echo "run $run: env verify ${env_times[-1]} s, serverspec ${spec_times[-1]} s" >&2
done
"$ENV_BIN" destroy -f >/dev/null 2>&1
env_mean=$(printf '%s\n' "${env_times[@]}" | mean)
spec_mean=$(printf '%s\n' "${spec_times[@]}" | mean)
echo "| measure (mean of $RUNS, 50 checks) | env verify | serverspec | env / serverspec |"
echo "|---|---|---|---|"
echo "| one running machine (TCG) | ${env_mean} s | ${spec_mean} s | $(ratio "$env_mean" "$spec_mean")x |"
cd /; rm -rf "$project" "$ENV_HOME"
