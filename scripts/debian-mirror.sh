# shellcheck shell=bash
# Sourced by scripts/setup-criu.sh and docker/base/build.sh: where this host gets Debian packages.

# The URI this host's apt configuration uses for suite $1 (default: the host's own release).
find_mirror() {
    local codename=${1:-}
    # shellcheck disable=SC1091
    [ -n "$codename" ] || codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    [ -n "$codename" ] || return 1
    {
        for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
            [ -r "$f" ] || continue
            sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" |
                awk -v s="$codename" '$1=="deb" && $3==s {print $2}'
        done
        for f in /etc/apt/sources.list.d/*.sources; do
            [ -r "$f" ] || continue
            sed -e 's/#.*//' "$f" | awk -v s="$codename" '
                function flush() { if (ok && uris != "") { n = split(uris, u, " "); for (i = 1; i <= n; i++) print u[i] } ok = 0; uris = "" }
                /^[ \t]*$/ { flush(); next }
                tolower($1) == "uris:" { $1 = ""; uris = $0 }
                tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == s) ok = 1 }
                END { flush() }'
        done
    } | sed 's:/*$::' | head -n1 | grep .
}
