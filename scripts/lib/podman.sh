# Podman on these machines, for the tests that run real containers
# (sourced, not run). No image registry is reachable: base images are made
# from Debian's packages with debootstrap. See shared/CONTAINERS.md.

# Installs podman, runc and debootstrap when missing.
podman_install() {
  local missing=() sudo=""
  command -v podman >/dev/null 2>&1 || missing+=(podman)
  command -v runc >/dev/null 2>&1 || missing+=(runc)
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "podman: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# podman with the runtime and limits these machines need: Debian's crun
# refuses hybrid cgroups here, and Podman's default ulimits exceed the
# machine's hard limits.
pm() {
  podman --runtime runc "$@"
}
PM_LIMITS=(--ulimit nofile=4096:4096 --ulimit nproc=4096:4096)

# The Debian mirror this machine's apt uses, read from its sources.
debian_mirror() {
  local uri
  # deb822 stanzas: the URIs of the one whose Suites has plain bookworm.
  uri="$(awk 'function done() { if (s && u != "" && !found) { print u; found = 1; exit } u = ""; s = 0 }
    /^[[:space:]]*$/ { done() } /^URIs:/ { u = $2 }
    /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == "bookworm") s = 1 }
    END { done() }' \
    /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
  [ -n "$uri" ] || uri="$(awk '$1 == "deb" && $3 ~ /^bookworm$/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null || true)"
  [ -n "$uri" ] || { echo "podman: no Debian mirror in /etc/apt/sources" >&2; return 1; }
  echo "$uri"
}

# debian_image NAME: imports a minimal Debian 12 (debootstrap minbase) as
# NAME, unless it exists. Prints nothing; about 90 s the first time.
debian_image() {
  local name="$1" rootfs
  pm image exists "$name" && return 0
  rootfs="$(mktemp -d /var/tmp/onecli-rootfs.XXXXXX)"
  echo "podman: debootstrap bookworm (minbase) for $name" >&2
  if ! debootstrap --variant=minbase bookworm "$rootfs" "$(debian_mirror)" >"$rootfs.log" 2>&1; then
    tail -20 "$rootfs.log" >&2
    rm -rf "$rootfs" "$rootfs.log"
    return 1
  fi
  tar -C "$rootfs" -c . | pm import --quiet - "$name" >/dev/null
  rm -rf "$rootfs" "$rootfs.log"
}

# The host's CA bundle, mounted where a container that installs
# ca-certificates itself does not overwrite it: the registries are reached
# here through an interception the container does not otherwise trust.
# Test scripts only; images stay free of it.
host_ca_args() {
  local bundle=/etc/ssl/certs/ca-certificates.crt
  [ -f "$bundle" ] || return 0
  printf '%s\n' -v "$bundle:/host-ca.crt:ro" \
    -e SSL_CERT_FILE=/host-ca.crt -e CURL_CA_BUNDLE=/host-ca.crt \
    -e CARGO_HTTP_CAINFO=/host-ca.crt -e PIP_CERT=/host-ca.crt \
    -e REQUESTS_CA_BUNDLE=/host-ca.crt -e NODE_EXTRA_CA_CERTS=/host-ca.crt
}
