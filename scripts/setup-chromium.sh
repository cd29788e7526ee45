#!/usr/bin/env bash
# Provides the headless Chromium that the report's browser tests drive, without root and without
# touching the system: Debian's `chromium-headless-shell` and the libraries it needs that a bare
# Debian 12 does not have, each pinned by version and sha256, fetched with `apt-get download` (the
# machine's own Debian sources, through a private package list under .deps/chromium/apt) and unpacked
# with `dpkg-deb -x` into .deps/chromium/root. .deps/chromium/bin/chromium runs it with
# LD_LIBRARY_PATH pointing into that tree and a fontconfig file that knows the unpacked DejaVu fonts.
#
#   bash scripts/setup-chromium.sh            install unless a Chromium is already there ($CHROMIUM, or
#                                             chromium / chromium-browser / google-chrome on PATH)
#   bash scripts/setup-chromium.sh --force    install into .deps/chromium even so
#   bash scripts/setup-chromium.sh --resolve  print pin lines for the archive's current point release
#
# Idempotent: a finished install leaves .deps/chromium/.complete-<pins hash> and is skipped next time.
#
# Pins: chromium-headless-shell of the Debian 12 point release and the Depends closure of its libraries,
# less what every Debian 12 with apt has (the Essential packages, apt and their dependencies, libc6
# among them: the system's C library and loader are the ones the tree is linked for), and less
# chromium-common's desktop tools (x11-utils, xdg-utils) that the headless shell never runs.
# Debian keeps a version in its archive until the next point release (about every two months). When a
# pinned one is gone the install stops and says so, unless CHROMIUM_PINS=archive: then it takes the
# archive's current point release (apt checks each file against the signed package index), prints the
# pin lines to put here, and records them in .deps/chromium/PINS.
set -euo pipefail
cd "$(dirname "$0")/.."
root_dir=$(pwd)
deps="$root_dir/.deps/chromium"
state="$deps/apt"
debs="$deps/debs"
tree="$deps/root"
python=${PYTHON:-python3}

# package=version sha256: Debian 12.15's chromium-headless-shell and what it needs (`--resolve`)
pins=(
  "at-spi2-common=2.46.0-5 441bc1c6cefdc01f519310abf55823deb868898480dee09a05aa44e8c83cabc2"
  "chromium-common=150.0.7871.100-1~deb12u1 31326f6b71ce20a52e7bea9792bf7135d4ff802e1cdbc250960b1b46729998d2"
  "chromium-headless-shell=150.0.7871.100-1~deb12u1 a6d195a93c6d4ee6ea17e99a183d52bd49599138f395a5c861a29ac592e081ee"
  "fontconfig-config=2.14.1-4 281c66e46b95f045a0282a6c7a03b33de0e9a08d016897a759aaf4a04adfddbe"
  "fonts-dejavu-core=2.37-6 8892669e51aab4dc56682c8e39d8ddb7d70fad83c369344e1e240bf3ca22bb76"
  "libasound2=1.2.8-1+b1 44c77b076a7b11ae99712439022d822245b1994c435da564ebd320bb676faf4c"
  "libasound2-data=1.2.8-1 fe0780d2d3674b2977e0acb0d48b448ad72ba1642564b7dc537f55e839984c2d"
  "libasyncns0=0.8-6+b3 cadaff99f4178b1f580331045621b363abaaefc994e78eecba1857774a3cead2"
  "libatk1.0-0=2.46.0-5 909dd661e03760a9ba1529bfc772f259cec8431999ee38b7c5521186237cdd98"
  "libatspi2.0-0=2.46.0-5 1c0332f3b712a8e5ee56800bbcab83a8f92098874094f2b0bdfd6b7fd45e8b83"
  "libbrotli1=1.0.9-2+b6 563b4caec1aa5e876bd3355b36e7a38e1484baf5a293b48d1e8bd22db786e4d7"
  "libbsd0=0.11.7-2 bb31cc8b40f962a85b2cec970f7f79cc704a1ae4bad24257a822055404b2c60b"
  "libdav1d6=1.0.0-2+deb12u1 197f08108242177aeae4c04aac11825c39b7d18598191ab769f910687ccb387f"
  "libdbus-1-3=1.14.10-1~deb12u1 18ee0ce5fab9f7b671e87da1e9fa18660e36e04a3402f24bdb8635e0ba1d35f6"
  "libdouble-conversion3=3.2.1-1 802b880ed900e4a8d54bab77b7551a7f3408b04891c3e5650fdc2368cc1fbc0a"
  "libdrm-common=2.4.114-1 32f9664138b38b224383c6986457d5ad2ec8efd559b1a0ce7749405f7a451aad"
  "libdrm2=2.4.114-1+b1 be18fb670797ba32da9628cf3e8acd83160d8db8c8dd842501dd8e401c3b5371"
  "libexpat1=2.5.0-1+deb12u2 2255e62fc22a86d2c544b8a3f516da9aee19383ad5742722ab4ce7f66a30dbc8"
  "libflac12=1.4.2+ds-2 4d8431c274eef13ec9ee2c0bf988c34b4342367dec053b7f69a432525be5b1fe"
  "libfontconfig1=2.14.1-4 16ee38d374e064f534116dc442b086ef26f9831f1c0af7e5fb4fe4512e700649"
  "libfreetype6=2.12.1+dfsg-5+deb12u4 8043e479f73f29992d652e3f9dfe8b17f9780c7ea6330afe379ec5f9f188ac44"
  "libgbm1=22.3.6-1+deb12u2 4323840f2b7b3e108990848529125d99c0956ae5a854c1e0568ed08c8faeaa2e"
  "libglib2.0-0=2.74.6-2+deb12u9 7ff85197685d89e150e342b29a59aab1beee400050ba7da73de81cd999ffee5a"
  "libgraphite2-3=1.3.14-1+deb12u1 c19a7f6ba9298db7eef041ae27b08985f2c02009e418063f8bccdb5bc5e858dc"
  "libharfbuzz-subset0=6.0.0+dfsg-3 020de1eeba5fb56052a6ca71b259f8cbe3f6fce5038f4caca751c7e4867ca33f"
  "libharfbuzz0b=6.0.0+dfsg-3 bfce132b7ee67b9c2d2166075b1936a25c8cc6866b6a049f99b8e94baa916e71"
  "libjpeg62-turbo=1:2.1.5-2 95ec30140789a342add8f8371ed018924de51b539056522b66f207b25cba9cad"
  "libminizip1=1.1-8+deb12u1 b2999b980cbb9e6dcaa2d5154c9d1f1b9d55f5a0ca8166699de7ab47afaf4a36"
  "libmp3lame0=3.100-6 b1292c749172e7623547ecf684da57d3ec6ca22109f08b11bbb9e6be6e6beb95"
  "libmpg123-0=1.31.2-1+deb12u1 a10ad0d59995b859797a5f20d2833672051d0b2c7dab4c71f2e79258b2e3f631"
  "libnspr4=2:4.35-1 6cca09767e94e4b5d2888ef31ad797bd3e7cec27fbbe98b49b10d4884746ce77"
  "libnss3=2:3.87.1-1+deb12u2 bb4339de2e76be9862225447c6c24b9d759baba5ee861d86dfb558ebf4474d14"
  "libogg0=1.3.5-3 f67acb0477aed0354f411172e37af338f3ac6bd4f3766134a2cf5539884b5a28"
  "libopenh264-7=2.3.1+dfsg-3+deb12u2 d453c4d81b7b3ff14663da75471250a4894543ae5ab5e902e225aca56aec56e8"
  "libopus0=1.3.1-3 c172e212f9039e741916aa8e12f3670d1e049dc0c16685325641288c2d83faa7"
  "libpng16-16=1.6.39-2+deb12u5 a56d64bfaa9da12aafb83347909e62e6fd5fd251e6b34c194065911a30359978"
  "libpulse0=16.1+dfsg1-2+b1 7b2c5403cb726312219aad678becc6d6adcee1d8694fdffce0b6ec15ae010831"
  "libsndfile1=1.2.0-1+deb12u1 02dc3f08fe8476e82e005f412e3b7289ff641180f33a9be8073f4bde61c85e8e"
  "libsqlite3-0=3.40.1-2+deb12u2 a8d78b40e9b4e422224aeebfe0e4dfc243f6acf3532490b0c05480d4283d41e2"
  "libvorbis0a=1.3.7-1 01c14f9d1109650077a4c5c337c285476a6932d4d448f5a190c2b845724dbf21"
  "libvorbisenc2=1.3.7-1 75dd4d6f904c7db82f5112e60d8efea9e81dfedf94e970c5da7af2b3d81643c0"
  "libwayland-server0=1.21.0-1 df0396221d7b794496a687ec61fae82b6465648bc0ab6501ba0a5ed7f56eb8d6"
  "libx11-6=2:1.8.4-2+deb12u2 d88c973e79fd9b65838d77624142952757e47a6eb1a58602acf0911cf35989f4"
  "libx11-data=2:1.8.4-2+deb12u2 987a848aeb1c358e4186368871b0526f10bb14c6b53214ab3bf8b69abb830191"
  "libx11-xcb1=2:1.8.4-2+deb12u2 f5da45e1d881a793250a96613f28c471a248877f1a0f18a5c90e2a620a76c898"
  "libxau6=1:1.0.9-1 679db1c4579ec7c61079adeaae8528adeb2e4bf5465baa6c56233b995d714750"
  "libxcb1=1.15-1 fdc61332a3892168f3cc9cfa1fe9cf11a91dc3e0acacbc47cbc50ebaa234cc71"
  "libxcomposite1=1:0.4.5-1 4c26ebf519d2ebc22fc1416dee45e12c4c4ef68aa9b2ed890356830df42b652a"
  "libxdamage1=1:1.1.6-1 fcdf7e4c29b307ba8711c864e1e646d76315a8f55121198143653e56592fa8a7"
  "libxdmcp6=1:1.1.2-3 ecb8536f5fb34543b55bb9dc5f5b14c9dbb4150a7bddb3f2287b7cab6e9d25ef"
  "libxext6=2:1.3.4-1+b1 504b7be9d7df4f6f4519e8dd4d6f9d03a9fb911a78530fa23a692fba3058cba6"
  "libxfixes3=1:6.0.0-2 1cd616396ff2ecae77e6e8b5b7695d414f0146de2d147837a2a02165f99e1a2c"
  "libxi6=2:1.8-1+b1 6c2fb5f241b311788990122c6e693915867cd8ed9d6da2e3524aec7ed3cdb4c0"
  "libxkbcommon0=1.5.0-1 e3fe045b9a33a101de1c5a912a4a10928db055c3f68930f47eccbb44d7c7d54e"
  "libxnvctrl0=525.85.05-3~deb12u1 6fc26e4b6069f4648692e0c225f580161e3b0c04e4bac1c616c8a418a9a9817d"
  "libxrandr2=2:1.5.2-2+b1 e2e10b672085ddf1d294cd689ed21bde5899325fd13626c2614b7d7b2d49a808"
  "libxrender1=1:0.9.10-1.1 b2a6d160578f359220101947c8d67059b44704a251e688de1d0b744fefedfd1a"
  "xkb-data=2.35.1-1 28a79c61b785f403da93af58c39aed13c022032935e3e54362c6707169cfe982"
)

die() { echo "setup-chromium: $*" >&2; exit 1; }

found_chromium() {
  if [ -n "${CHROMIUM:-}" ]; then
    [ -f "$CHROMIUM" ] && { echo "$CHROMIUM"; return 0; }
    die "CHROMIUM=$CHROMIUM is not a file"
  fi
  local n
  for n in chromium chromium-browser google-chrome; do
    if command -v "$n" > /dev/null 2>&1; then
      command -v "$n"
      return 0
    fi
  done
  return 1
}

mode=install
case "${1:-}" in
'') ;;
--force) mode=force ;;
--resolve) mode=resolve ;;
*) die "unknown option '$1' (--force, --resolve)" ;;
esac

pins_id=$(printf '%s\n' "${pins[@]}" | sha256sum | cut -c1-12)
if [ "$mode" = install ]; then
  if [ -f "$deps/.complete-$pins_id" ]; then
    exit 0
  fi
  if existing=$(found_chromium); then
    echo "Chromium found at $existing: nothing to install (--force installs the pinned one into .deps/chromium)"
    exit 0
  fi
elif [ "$mode" = force ] && [ -f "$deps/.complete-$pins_id" ]; then
  echo "the pinned Chromium is already in .deps/chromium"
  exit 0
fi

if ! command -v apt-get > /dev/null || ! command -v dpkg-deb > /dev/null; then
  die "apt-get and dpkg-deb are needed (a Debian or Ubuntu machine); or install Chromium and set CHROMIUM"
fi
command -v "$python" > /dev/null || die "python3 is needed to read the package index"

# A private package list: no root, the system's lists and cache untouched.
mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$debs"
apt_opts=(
  -o "Dir::State::Lists=$state/lists"
  -o "Dir::Cache=$state/cache"
  -o "Debug::NoLocking=1"
  -o "APT::Sandbox::User=$(id -un)"
  -q
)
echo "reading Debian's package index (private copy in .deps/chromium/apt)" >&2
apt-get "${apt_opts[@]}" update > "$state/update.log" 2>&1 \
  || { cat "$state/update.log" >&2; die "apt-get update failed (are Debian's package servers reachable?)"; }

# `--resolve`: the pins of the archive's point release (see above), as lines for the pins array.
resolve() {
  local codename arch
  # shellcheck disable=SC1091 # the machine's own release file
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:?}")
  arch=$(dpkg --print-architecture)
  local index
  # The first of the listing, read whole: a `head` in the pipe can kill `find` with SIGPIPE under pipefail.
  index=$(find "$state/lists" -maxdepth 1 -name "*_dists_${codename}_main_binary-${arch}_Packages*" | sed -n 1p)
  [ -n "$index" ] || die "no package index of $codename/main for $arch in the machine's Debian sources"
  /usr/lib/apt/apt-helper cat-file "$index" > "$state/index.txt"
  "$python" - "$state/index.txt" <<'PY'
import sys
records, provides = {}, {}
for block in open(sys.argv[1]).read().split("\n\n"):
    rec, key = {}, None
    for line in block.splitlines():
        if line[:1] in " \t" and key:
            rec[key] += " " + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            rec[key] = value.strip()
    if "Package" not in rec:
        continue
    records[rec["Package"]] = rec
    for p in rec.get("Provides", "").split(","):
        if p.strip():
            provides.setdefault(p.split()[0], rec["Package"])

def depends(name):
    rec = records[name]
    for field in ("Pre-Depends", "Depends"):
        for alternatives in rec.get(field, "").split(","):
            if not alternatives.strip():
                continue
            for alt in alternatives.split("|"):
                dep = alt.split()[0].split(":")[0]
                dep = dep if dep in records else provides.get(dep)
                if dep:
                    yield dep
                    break

def closure(start, skip=()):
    seen, todo = set(), list(start)
    while todo:
        p = todo.pop()
        if p in seen or p in skip:
            continue
        seen.add(p)
        todo.extend(depends(p))
    return seen

base = closure([p for p, r in records.items() if r.get("Essential") == "yes"] + ["apt"])
wanted = closure(["chromium-headless-shell"], skip={"x11-utils", "xdg-utils"}) - base
for p in sorted(wanted):
    r = records[p]
    print(f'  "{p}={r["Version"]} {r["SHA256"]}"')
PY
}

if [ "$mode" = resolve ]; then
  resolve
  exit 0
fi

installed_pins=("${pins[@]}")
# The .deb of "package=version" as apt-get download names it (an epoch's colon written %3a).
deb_of() {
  local spec=${1%% *}
  local name=${spec%%=*} version=${spec#*=}
  find "$debs" -maxdepth 1 -name "${name}_${version//:/%3a}_*.deb" | sed -n 1p
}
# Downloads the pins not already here with their checksum (one apt-get call), then checks each;
# the pins that the archive no longer holds go into the array `missing`.
fetch() { # "package=version sha256"...
  local p have wanted=()
  missing=()
  for p in "$@"; do
    have=$(deb_of "$p")
    if [ -n "$have" ] && echo "${p#* }  $have" | sha256sum -c --status; then
      continue
    fi
    [ -z "$have" ] || rm -f "$have"
    wanted+=("${p%% *}")
  done
  [ "${#wanted[@]}" -gt 0 ] || return 0
  # One apt-get call for all; it refuses the lot when it does not know a version, so then the known
  # ones are asked for (one look-up each) and the others reported.
  if ! (cd "$debs" && apt-get "${apt_opts[@]}" download "${wanted[@]}" > "$state/download.log" 2>&1); then
    local known=()
    for p in "${wanted[@]}"; do
      if apt-cache "${apt_opts[@]}" show "$p" 2> /dev/null | grep '^Package:' > /dev/null; then
        known+=("$p")
      fi
    done
    if [ "${#known[@]}" -gt 0 ]; then
      (cd "$debs" && apt-get "${apt_opts[@]}" download "${known[@]}" > "$state/download.log" 2>&1) \
        || { cat "$state/download.log" >&2; die "apt-get download failed"; }
    fi
  fi
  for p in "$@"; do
    have=$(deb_of "$p")
    if [ -z "$have" ]; then
      missing+=("${p%% *}")
    elif ! echo "${p#* }  $have" | sha256sum -c --status; then
      rm -f "$have"
      die "checksum mismatch for ${p%% *}: expected sha256 ${p#* }"
    fi
  done
}

echo "downloading chromium-headless-shell and the libraries it needs: ${#pins[@]} pinned Debian packages"
fetch "${pins[@]}"
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "${CHROMIUM_PINS:-}" != archive ]; then
    die "no longer in Debian's archive (a newer point release replaced them): ${missing[*]}.
Update the pins: bash scripts/setup-chromium.sh --resolve, and put its lines into the pins array of
scripts/setup-chromium.sh; or install the archive's current versions now with CHROMIUM_PINS=archive."
  fi
  echo "warning: pinned packages gone from Debian's archive (${missing[*]}): CHROMIUM_PINS=archive, so" \
    "installing the archive's current point release; put these lines into scripts/setup-chromium.sh:" >&2
  resolve > "$state/resolved-pins"
  mapfile -t installed_pins < <(sed -e 's/^ *"//' -e 's/"$//' "$state/resolved-pins")
  [ "${#installed_pins[@]}" -gt 0 ] || die "no pins resolved from the archive's index"
  printf '  "%s"\n' "${installed_pins[@]}" >&2
  fetch "${installed_pins[@]}"
  [ "${#missing[@]}" -eq 0 ] || die "not in Debian's archive: ${missing[*]}"
fi

echo "unpacking into .deps/chromium/root"
rm -rf "${tree:?}" "${deps:?}/bin" "$deps"/.complete-*
mkdir -p "$tree" "$deps/bin"
for p in "${installed_pins[@]}"; do
  dpkg-deb -x "$(deb_of "$p")" "$tree"
done
printf '%s\n' "${installed_pins[@]}" > "$deps/PINS"
binary="$tree/usr/lib/chromium/chromium-headless-shell"
[ -x "$binary" ] || die "the unpacked tree has no $binary"

# Fonts: only the unpacked ones (DejaVu), so pages render alike on every machine; the cache stays here.
mkdir -p "$deps/fontconfig-cache"
cat > "$deps/fonts.conf" <<EOF
<?xml version="1.0"?>
<!DOCTYPE fontconfig SYSTEM "urn:fontconfig:fonts.dtd">
<!-- Written by scripts/setup-chromium.sh: the fonts of the unpacked tree only. -->
<fontconfig>
  <dir>$tree/usr/share/fonts</dir>
  <cachedir>$deps/fontconfig-cache</cachedir>
</fontconfig>
EOF

multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2> /dev/null || echo "$(uname -m)-linux-gnu")
cat > "$deps/bin/chromium" <<EOF
#!/bin/sh
# Written by scripts/setup-chromium.sh: Debian's chromium-headless-shell from .deps/chromium/root, with
# its libraries and fonts from there.
root=\$(dirname "\$(dirname "\$(readlink -f "\$0")")")/root
LD_LIBRARY_PATH="\$root/usr/lib/$multiarch:\$root/lib/$multiarch:\$root/usr/lib/$multiarch/pulseaudio:\$root/usr/lib/chromium\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
FONTCONFIG_FILE="\$root/../fonts.conf"
export LD_LIBRARY_PATH FONTCONFIG_FILE
exec "\$root/usr/lib/chromium/chromium-headless-shell" "\$@"
EOF
chmod +x "$deps/bin/chromium"

# Every library resolves, and the browser renders a page.
unresolved=$(env LD_LIBRARY_PATH="$tree/usr/lib/$multiarch:$tree/lib/$multiarch:$tree/usr/lib/$multiarch/pulseaudio:$tree/usr/lib/chromium" \
  ldd "$binary" | grep 'not found' || true)
[ -z "$unresolved" ] || die "libraries missing from the pins: $unresolved"
profile=$(mktemp -d)
page=$("$deps/bin/chromium" --headless --no-sandbox --disable-gpu --no-first-run \
  --user-data-dir="$profile" --dump-dom 'data:text/html,<p id=x>rendered</p>' 2> "$deps/smoke.log" || true)
rm -rf "$profile"
case $page in
*'<p id="x">rendered</p>'*) ;;
*) cat "$deps/smoke.log" >&2; die "the unpacked Chromium does not render a page (log above)" ;;
esac
version=$("$deps/bin/chromium" --version 2> /dev/null || true)
touch "$deps/.complete-$pins_id"
echo "${version:-Chromium} in .deps/chromium (run .deps/chromium/bin/chromium)"
