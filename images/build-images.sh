#!/usr/bin/env bash
# Builds the rkubelet test images as hand-made OCI image layouts and pushes
# them to the private registry of scripts/node-env.
#
#   127.0.0.1:5000/rkubelet/pause:3.9       static pause program (images/pause/pause.c)
#   127.0.0.1:5000/library/busybox:1.36     busybox-static rootfs (+ :latest)
#   127.0.0.1:5000/rkubelet/grpc-health:1.0 static grpc.health.v1 server (images/grpc-health,
#                                           built with cargo; for the gRPC probe tests)
#
# Reproducible: fixed mtimes/owners, sorted tar, `gzip -n`, fixed "created".
# Idempotent and fast: a layout is rebuilt only when its inputs changed
# (stamp file), and a tag is pushed only when the registry does not already
# serve the same manifest digest.
#
# Usage: images/build-images.sh            (build + push)
#        images/build-images.sh --build-only
# Env:   RKENV_REGISTRY   (default 127.0.0.1:5000)
#        RKENV_IMAGES_DIR (default /var/lib/rkubelet-env/images)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REGISTRY="${RKENV_REGISTRY:-127.0.0.1:5000}"
WORK="${RKENV_IMAGES_DIR:-/var/lib/rkubelet-env/images}"
PUSH=1
[[ "${1:-}" == "--build-only" ]] && PUSH=0

# Fixed timestamp for reproducible configs.
EPOCH_CREATED="1970-01-01T00:00:00Z"
IMAGE_PATH_ENV="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

log() { printf '[build-images] %s\n' "$*" >&2; }
die() { printf '[build-images] ERROR: %s\n' "$*" >&2; exit 1; }

for tool in gcc tar gzip sha256sum jq skopeo curl busybox cargo rustc; do
	command -v "$tool" >/dev/null 2>&1 || die "missing tool: $tool (run scripts/node-env up)"
done

oci_arch() {
	local deb
	deb="$(dpkg --print-architecture 2>/dev/null || uname -m)"
	case "$deb" in
	amd64 | x86_64) echo "amd64 " ;;
	arm64 | aarch64) echo "arm64 v8" ;;
	armhf) echo "arm v7" ;;
	armel) echo "arm v5" ;;
	i386) echo "386 " ;;
	ppc64el) echo "ppc64le " ;;
	s390x) echo "s390x " ;;
	riscv64) echo "riscv64 " ;;
	mips64el) echo "mips64le " ;;
	*) die "unsupported architecture: $deb" ;;
	esac
}
read -r ARCH VARIANT <<<"$(oci_arch)"

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }
size_of() { stat -c %s "$1"; }

# write_blob <layout> <file> -> prints digest hex; moves file into blobs/
write_blob() {
	local layout="$1" file="$2" hex
	hex="$(sha256_of "$file")"
	mkdir -p "$layout/blobs/sha256"
	mv -f "$file" "$layout/blobs/sha256/$hex"
	echo "$hex"
}

# normalize_tree <dir>: deterministic permissions (mtime/owner set by tar).
normalize_tree() {
	local dir="$1"
	find "$dir" -type d -exec chmod 0755 {} +
	find "$dir" -type f -exec chmod 0644 {} +
}

# build_layout <layout-dir> <rootfs-dir> <config-json (the "config" object)> <tag>...
build_layout() {
	local layout="$1" rootfs="$2" cfg="$3"
	shift 3
	local tmp
	tmp="$(mktemp -d "$WORK/.tmp.XXXXXX")"
	mkdir -p "$tmp/layout"

	# Layer: sorted tar with fixed metadata, entries without "./" prefix.
	local entries=()
	mapfile -t entries < <(cd "$rootfs" && find . -mindepth 1 -maxdepth 1 -printf '%P\n' | LC_ALL=C sort)
	(cd "$rootfs" && tar --sort=name --mtime='@0' --owner=0 --group=0 --numeric-owner \
		--format=gnu -cf "$tmp/layer.tar" "${entries[@]}")
	local diff_id
	diff_id="$(sha256_of "$tmp/layer.tar")"
	gzip -n -9 -c "$tmp/layer.tar" >"$tmp/layer.tar.gz"
	rm -f "$tmp/layer.tar"
	local layer_size layer_hex
	layer_size="$(size_of "$tmp/layer.tar.gz")"
	layer_hex="$(write_blob "$tmp/layout" "$tmp/layer.tar.gz")"

	# Image config.
	jq -cnS --arg arch "$ARCH" --arg variant "$VARIANT" --arg created "$EPOCH_CREATED" \
		--arg diff "sha256:$diff_id" --argjson cfg "$cfg" '
		{architecture: $arch, os: "linux", created: $created, config: $cfg,
		 rootfs: {type: "layers", diff_ids: [$diff]},
		 history: [{created: $created, created_by: "rkubelet images/build-images.sh"}]}
		+ (if $variant != "" then {variant: $variant} else {} end)' >"$tmp/config.json"
	local cfg_size cfg_hex
	cfg_size="$(size_of "$tmp/config.json")"
	cfg_hex="$(write_blob "$tmp/layout" "$tmp/config.json")"

	# Manifest.
	jq -cn --arg cd "sha256:$cfg_hex" --argjson cs "$cfg_size" \
		--arg ld "sha256:$layer_hex" --argjson ls "$layer_size" '
		{schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
		 config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $cd, size: $cs},
		 layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: $ld, size: $ls}]}' \
		>"$tmp/manifest.json"
	local man_size man_hex
	man_size="$(size_of "$tmp/manifest.json")"
	man_hex="$(write_blob "$tmp/layout" "$tmp/manifest.json")"

	# index.json with one entry per tag + oci-layout marker.
	local tags_json
	tags_json="$(printf '%s\n' "$@" | jq -R . | jq -cs .)"
	jq -cn --arg md "sha256:$man_hex" --argjson ms "$man_size" --argjson tags "$tags_json" \
		--arg arch "$ARCH" '
		{schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
		 manifests: [$tags[] | {mediaType: "application/vnd.oci.image.manifest.v1+json",
			digest: $md, size: $ms, platform: {architecture: $arch, os: "linux"},
			annotations: {"org.opencontainers.image.ref.name": .}}]}' >"$tmp/layout/index.json"
	echo '{"imageLayoutVersion":"1.0.0"}' >"$tmp/layout/oci-layout"

	rm -rf "$layout"
	mv "$tmp/layout" "$layout"
	rm -rf "$tmp"
}

manifest_digest() { # <layout> -> sha256:...
	jq -r '.manifests[0].digest' "$1/index.json"
}

registry_digest() { # <repo> <tag> -> digest or empty
	curl -sfI --max-time 10 \
		-H 'Accept: application/vnd.oci.image.manifest.v1+json' \
		-H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
		"http://$REGISTRY/v2/$1/manifests/$2" 2>/dev/null |
		tr -d '\r' | awk -F': ' 'tolower($1)=="docker-content-digest"{print $2}' || true
}

# skopeo run as root would create /var/lib/containers/cache (its blob-info
# cache, not configurable from the CLI). Run it unprivileged with a private
# HOME/XDG dirs instead so nothing is written outside $WORK.
SKOPEO_UID=65534
skopeo_() {
	local home="$WORK/.skopeo-home"
	mkdir -p "$home/tmp" "$home/data" "$home/run"
	chown -R "$SKOPEO_UID:$SKOPEO_UID" "$home"
	chmod 0700 "$home/run"
	if [[ $EUID -eq 0 ]] && command -v setpriv >/dev/null 2>&1; then
		env -i PATH="$PATH" HOME="$home" XDG_DATA_HOME="$home/data" XDG_CONFIG_HOME="$home/config" \
			XDG_RUNTIME_DIR="$home/run" TMPDIR="$home/tmp" \
			setpriv --reuid="$SKOPEO_UID" --regid="$SKOPEO_UID" --clear-groups \
			skopeo --insecure-policy --tmpdir "$home/tmp" "$@"
	else
		HOME="$home" XDG_DATA_HOME="$home/data" skopeo --insecure-policy --tmpdir "$home/tmp" "$@"
	fi
}

push_tags() { # <layout> <repo> <tag>...
	local layout="$1" repo="$2"
	shift 2
	local want tag have
	want="$(manifest_digest "$layout")"
	for tag in "$@"; do
		have="$(registry_digest "$repo" "$tag")"
		if [[ "$have" == "$want" ]]; then
			log "$REGISTRY/$repo:$tag up to date ($want)"
			continue
		fi
		log "pushing $REGISTRY/$repo:$tag ($want)"
		skopeo_ copy --quiet --dest-tls-verify=false --preserve-digests \
			"oci:$layout:$tag" "docker://$REGISTRY/$repo:$tag" >&2
		have="$(registry_digest "$repo" "$tag")"
		[[ "$have" == "$want" ]] || die "registry has $repo:$tag as '$have', expected $want"
	done
}

# ensure_image <name> <inputs-hash> <builder-fn> -> builds layout if stale
ensure_image() {
	local name="$1" inputs="$2" builder="$3"
	local layout="$WORK/$name" stamp="$WORK/$name.inputs"
	if [[ -f "$layout/index.json" && -f "$stamp" && "$(cat "$stamp")" == "$inputs" ]]; then
		return 0
	fi
	log "building $name"
	rm -f "$stamp"
	"$builder" "$layout"
	echo "$inputs" >"$stamp"
}

SELF_HASH="$(sha256_of "${BASH_SOURCE[0]}")"

# ---------------------------------------------------------------- pause
PAUSE_SRC="$HERE/pause/pause.c"
build_pause() {
	local layout="$1" root
	root="$(mktemp -d "$WORK/.rootfs.XXXXXX")"
	gcc -static -Os -s -Wall -Wextra -o "$root/pause" "$PAUSE_SRC"
	normalize_tree "$root"
	chmod 0755 "$root/pause"
	build_layout "$layout" "$root" \
		"$(jq -cn --arg p "$IMAGE_PATH_ENV" '{Env: [$p], Entrypoint: ["/pause"], User: "65535:65535"}')" \
		3.9
	rm -rf "$root"
}

# ---------------------------------------------------------------- busybox
BUSYBOX_BIN="$(command -v busybox)"
build_busybox() {
	local layout="$1" root applet
	root="$(mktemp -d "$WORK/.rootfs.XXXXXX")"
	mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/root" "$root/home" \
		"$root/var/www" "$root/proc" "$root/sys" "$root/dev"
	cp "$BUSYBOX_BIN" "$root/bin/busybox"
	cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/home:/bin/false
EOF
	cat >"$root/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
	normalize_tree "$root"
	chmod 0755 "$root/bin/busybox"
	chmod 1777 "$root/tmp"
	chmod 0700 "$root/root"
	for applet in $("$BUSYBOX_BIN" --list); do
		[[ "$applet" == busybox ]] && continue
		ln -s busybox "$root/bin/$applet"
	done
	build_layout "$layout" "$root" \
		"$(jq -cn --arg p "$IMAGE_PATH_ENV" '{Env: [$p], Cmd: ["sh"]}')" \
		1.36 latest
	rm -rf "$root"
}

# ---------------------------------------------------------------- grpc-health
GRPC_DIR="$HERE/grpc-health"
build_grpc_health() {
	local layout="$1" root host target="$WORK/.grpc-health-target"
	root="$(mktemp -d "$WORK/.rootfs.XXXXXX")"
	host="$(rustc -vV | awk '/^host:/{print $2}')"
	# Static (glibc, crt-static) so the image needs nothing else; --target keeps the flag off
	# the build scripts and proc-macros.
	RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR="$target" \
		cargo build --quiet --release --locked --manifest-path "$GRPC_DIR/Cargo.toml" --target "$host" >&2
	cp "$target/$host/release/grpc-health-server" "$root/grpc-health-server"
	normalize_tree "$root"
	chmod 0755 "$root/grpc-health-server"
	build_layout "$layout" "$root" \
		"$(jq -cn --arg p "$IMAGE_PATH_ENV" '{Env: [$p], Entrypoint: ["/grpc-health-server"]}')" \
		1.0
	rm -rf "$root"
}
grpc_inputs() {
	cat "$GRPC_DIR/Cargo.toml" "$GRPC_DIR/Cargo.lock" "$GRPC_DIR/src/main.rs" | sha256sum | cut -d' ' -f1
}

mkdir -p "$WORK"
rm -rf "$WORK"/.tmp.* "$WORK"/.rootfs.* "$WORK/.skopeo-home/tmp"

ensure_image pause "$SELF_HASH $(sha256_of "$PAUSE_SRC") $(gcc -dumpfullversion 2>/dev/null || gcc -dumpversion) $ARCH" build_pause
ensure_image busybox "$SELF_HASH $(sha256_of "$BUSYBOX_BIN") $ARCH" build_busybox
ensure_image grpc-health "$SELF_HASH $(grpc_inputs) $(rustc -V) $ARCH" build_grpc_health

if ((PUSH)); then
	curl -sf --max-time 5 "http://$REGISTRY/v2/" >/dev/null || die "registry $REGISTRY is not answering"
	push_tags "$WORK/pause" rkubelet/pause 3.9
	push_tags "$WORK/busybox" library/busybox 1.36 latest
	push_tags "$WORK/grpc-health" rkubelet/grpc-health 1.0
fi
