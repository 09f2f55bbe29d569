#!/bin/sh
# The container image's entrypoint (deploy/Dockerfile): never starts an
# unauthenticated redhubd that listens beyond loopback, and never puts a
# secret on redhubd's command line (ps shows argv to every user).
#
# It writes $REDHUB_RUNTIME_DIR/redhubd.conf (mode 0600, in a 0700
# directory): $REDHUB_CONFIG's lines, less those it sets, plus
#   aclfile            $REDHUB_RUNTIME_DIR/users.acl (0600), written when a
#                      password comes from REDHUB_PASSWORD_FILE (a Docker or
#                      Kubernetes secret) or REDHUB_PASSWORD (visible in
#                      `docker inspect`: prefer the file; unset before
#                      redhubd starts): "user default on #<sha256> ~* &*
#                      +@all", the default user with that password, as
#                      requirepass would make it. A hash, not requirepass:
#                      any byte but a line break survives (the configuration
#                      file's parser reads '#' as a comment and splits quoted
#                      values with quotes inside), and no file holds the
#                      password itself
#   protected-mode     from REDHUB_PROTECTED_MODE (yes or no)
#   admin-auth-*       from REDHUB_ADMIN_USER + REDHUB_ADMIN_PASSWORD_FILE
#                      and/or REDHUB_ADMIN_TOKEN_FILE (paths: redhubd reads
#                      the secrets itself)
#   admin-bind         REDHUB_ADMIN_BIND if set; else 0.0.0.0 with admin
#                      authentication, 127.0.0.1 without (the image's
#                      HEALTHCHECK runs inside the container and still
#                      reaches it)
# and runs: redhubd --config $REDHUB_RUNTIME_DIR/redhubd.conf "$@".
# SIGHUP re-reads that file, so a reload keeps the password.
#
# Refused (exit 1, before redhubd runs): a TCP listener beyond loopback
# (--bind / bind) while no credential is configured (REDHUB_PASSWORD*,
# requirepass or aclfile in the configuration, --aclfile) and protected
# mode was not chosen explicitly (REDHUB_PROTECTED_MODE, --protected-mode
# or protected-mode in the configuration); --requirepass on the command
# line; a password with a line break; a password together with an aclfile
# (the default user's password then belongs in that file).
#
# For tests and unusual images: REDHUB_CONFIG (default
# /etc/redhub/redhubd.conf), REDHUB_RUNTIME_DIR (default /run/redhub),
# REDHUB_BINARY (default /usr/local/bin/redhubd).
set -eu

config=${REDHUB_CONFIG:-/etc/redhub/redhubd.conf}
runtime_dir=${REDHUB_RUNTIME_DIR:-/run/redhub}
binary=${REDHUB_BINARY:-/usr/local/bin/redhubd}

fail() {
  echo "redhubd entrypoint: $*" >&2
  exit 1
}

# The value of key in the configuration file: the last "key = value" line,
# quotes removed; empty if none.
config_value() {
  sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*//p" "$config" | tail -n 1 |
    sed -e 's/[[:space:]]*$//' -e 's/^"\(.*\)"$/\1/' -e "s/^'\(.*\)'\$/\1/" \
      -e 's/^\[\(.*\)\]$/\1/'
}
config_has() { grep -q "^[[:space:]]*$1[[:space:]]*=" "$config"; }

[ -r "$config" ] || fail "cannot read $config (REDHUB_CONFIG)"

# What the command line sets, last one winning as in redhubd.
arg_bind="" arg_port="" arg_protected="" arg_admin_bind="" arg_aclfile="" arg_admin_auth=""
expect=""
for a in "$@"; do
  if [ -n "$expect" ]; then
    eval "$expect=\$a"
    expect=""
    continue
  fi
  case $a in
    --requirepass | --requirepass=*)
      fail "--requirepass would show the password in ps: use REDHUB_PASSWORD_FILE (a secret file) or REDHUB_PASSWORD" ;;
    --config | --config=*)
      fail "--config: mount your file and set REDHUB_CONFIG to its path instead" ;;
    --bind) expect=arg_bind ;;
    --bind=*) arg_bind=${a#--bind=} ;;
    --port) expect=arg_port ;;
    --port=*) arg_port=${a#--port=} ;;
    --protected-mode) expect=arg_protected ;;
    --protected-mode=*) arg_protected=${a#--protected-mode=} ;;
    --admin-bind) expect=arg_admin_bind ;;
    --admin-bind=*) arg_admin_bind=${a#--admin-bind=} ;;
    --aclfile) expect=arg_aclfile ;;
    --aclfile=*) arg_aclfile=${a#--aclfile=} ;;
    --admin-auth-password-file | --admin-auth-password-file=* | --admin-auth-token-file | \
      --admin-auth-token-file=*)
      arg_admin_auth=yes ;;
  esac
done

# The password, from a file or the variable; never echoed.
password=""
if [ -n "${REDHUB_PASSWORD_FILE:-}" ]; then
  [ -r "$REDHUB_PASSWORD_FILE" ] || fail "cannot read REDHUB_PASSWORD_FILE $REDHUB_PASSWORD_FILE"
  password=$(cat "$REDHUB_PASSWORD_FILE")
  [ -n "$password" ] || fail "REDHUB_PASSWORD_FILE $REDHUB_PASSWORD_FILE is empty"
elif [ -n "${REDHUB_PASSWORD:-}" ]; then
  password=$REDHUB_PASSWORD
fi
unset REDHUB_PASSWORD
if [ -n "$password" ] && { [ -n "$arg_aclfile" ] || config_has aclfile; }; then
  fail "a password (REDHUB_PASSWORD_FILE, REDHUB_PASSWORD) and an aclfile: give the default user's password in the ACL file instead"
fi
if [ "$(printf '%s' "$password" | wc -l)" -ne 0 ] || printf '%s' "$password" | grep -q "$(printf '\r')"; then
  fail "the password holds more than one line"
fi

protected=${REDHUB_PROTECTED_MODE:-}
case $protected in
  "" | yes | no) ;;
  *) fail "REDHUB_PROTECTED_MODE must be yes or no, not '$protected'" ;;
esac

# Does anything but loopback get a TCP listener?
bind=${arg_bind:-$(config_value bind)}
bind=${bind:-127.0.0.1}
port=${arg_port:-$(config_value port)}
exposed=no
if [ "${port:-6379}" != 0 ]; then
  for address in $(echo "$bind" | tr ',' ' '); do
    case $address in
      127.* | ::1 | localhost) ;;
      *) exposed=yes ;;
    esac
  done
fi

credentials=no
if [ -n "$password" ] || [ -n "$arg_aclfile" ] || config_has aclfile ||
  { config_has requirepass && [ -n "$(config_value requirepass)" ]; }; then
  credentials=yes
fi
protected_chosen=no
if [ -n "$protected" ] || [ -n "$arg_protected" ] || config_has protected-mode; then
  protected_chosen=yes
fi
if [ "$exposed" = yes ] && [ "$credentials" = no ] && [ "$protected_chosen" = no ]; then
  fail "refusing to listen on $bind without a password. Set REDHUB_PASSWORD_FILE (a secret file holding the default user's password), or REDHUB_PASSWORD, or give users with --aclfile; or bind loopback only (--bind 127.0.0.1); or choose protected mode explicitly: REDHUB_PROTECTED_MODE=yes serves only loopback clients while the default user has no password, REDHUB_PROTECTED_MODE=no serves everyone without authentication"
fi
if [ "$exposed" = yes ] && [ "$credentials" = no ] && [ "$protected" = no ]; then
  echo "redhubd entrypoint: warning: serving every client on $bind without authentication (REDHUB_PROTECTED_MODE=no)" >&2
fi

admin_auth=no
if [ -n "${REDHUB_ADMIN_PASSWORD_FILE:-}" ] || [ -n "${REDHUB_ADMIN_TOKEN_FILE:-}" ] ||
  [ -n "$arg_admin_auth" ] || config_has admin-auth-password-file ||
  config_has admin-auth-token-file; then
  admin_auth=yes
fi
if [ -n "${REDHUB_ADMIN_PASSWORD_FILE:-}" ] && [ -z "${REDHUB_ADMIN_USER:-}" ]; then
  fail "REDHUB_ADMIN_PASSWORD_FILE needs REDHUB_ADMIN_USER"
fi
admin_bind=${REDHUB_ADMIN_BIND:-}
if [ -z "$admin_bind" ] && [ -z "$arg_admin_bind" ]; then
  if [ "$admin_auth" = yes ]; then admin_bind=0.0.0.0; else admin_bind=127.0.0.1; fi
fi

# The keys this script writes replace the file's own.
set_keys=""
[ -n "$password" ] && set_keys="$set_keys requirepass aclfile"
[ -n "$protected" ] && set_keys="$set_keys protected-mode"
[ -n "$admin_bind" ] && set_keys="$set_keys admin-bind"
[ -n "${REDHUB_ADMIN_USER:-}" ] && set_keys="$set_keys admin-auth-user"
[ -n "${REDHUB_ADMIN_PASSWORD_FILE:-}" ] && set_keys="$set_keys admin-auth-password-file"
[ -n "${REDHUB_ADMIN_TOKEN_FILE:-}" ] && set_keys="$set_keys admin-auth-token-file"

umask 077
mkdir -p "$runtime_dir" || fail "cannot create $runtime_dir (REDHUB_RUNTIME_DIR; with --read-only, mount a tmpfs there)"
chmod 0700 "$runtime_dir" 2>/dev/null || true
generated="$runtime_dir/redhubd.conf"
users="$runtime_dir/users.acl"
tmp="$generated.tmp.$$"
if [ -n "$password" ]; then
  # printf is the shell's own, so the password is on no command line;
  # sha256sum reads it from the pipe.
  digest=$(printf '%s' "$password" | sha256sum | cut -d ' ' -f 1)
  printf 'user default on #%s ~* &* +@all\n' "$digest" >"$users.tmp.$$" ||
    fail "cannot write $users.tmp.$$"
  chmod 0600 "$users.tmp.$$"
  mv -f "$users.tmp.$$" "$users"
fi
{
  echo "# Generated by docker-entrypoint.sh from $config; rewritten at every start."
  filter='^$'
  for key in $set_keys; do filter="${filter}|^[[:space:]]*${key}[[:space:]]*="; done
  grep -Ev "$filter" "$config" || true
  [ -n "$password" ] && echo "aclfile = $users"
  [ -n "$protected" ] && echo "protected-mode = $protected"
  [ -n "$admin_bind" ] && echo "admin-bind = $admin_bind"
  [ -n "${REDHUB_ADMIN_USER:-}" ] && echo "admin-auth-user = $REDHUB_ADMIN_USER"
  [ -n "${REDHUB_ADMIN_PASSWORD_FILE:-}" ] && echo "admin-auth-password-file = $REDHUB_ADMIN_PASSWORD_FILE"
  [ -n "${REDHUB_ADMIN_TOKEN_FILE:-}" ] && echo "admin-auth-token-file = $REDHUB_ADMIN_TOKEN_FILE"
  true
} >"$tmp" || fail "cannot write $tmp"
chmod 0600 "$tmp"
mv -f "$tmp" "$generated"
password=""

exec "$binary" --config "$generated" "$@"
