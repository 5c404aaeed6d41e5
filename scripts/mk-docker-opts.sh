#!/bin/sh
# Turns flannel's subnet.env into Docker daemon options (plain POSIX sh; behaves as upstream
# flannel's dist/mk-docker-opts.sh).
#   -f FILE  subnet.env to read (default /run/flannel/subnet.env; a missing file gives no options)
#   -d FILE  file to write (default /run/docker_opts.env)
#   -i       write the individual DOCKER_OPT_* variables
#   -c       write the combined variable (both -i and -c, or neither: write both)
#   -k NAME  name of the combined variable (default DOCKER_OPTS); its value in the environment
#            is kept in front of the generated options
#   -m       leave out --ip-masq (for old Docker versions)
# FLANNEL_IPMASQ=true gives --ip-masq=false (flannel masquerades, Docker must not) and false gives
# --ip-masq=true. Exits 1 when the routing table already routes the subnet via a gateway.

usage() {
	sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 1
}

flannel_env=/run/flannel/subnet.env
docker_env=/run/docker_opts.env
key=DOCKER_OPTS
indiv=false
combined=false
ipmasq=true

while getopts "f:d:icmk:h" opt; do
	case $opt in
	f) flannel_env=$OPTARG ;;
	d) docker_env=$OPTARG ;;
	i) indiv=true ;;
	c) combined=true ;;
	m) ipmasq=false ;;
	k) key=$OPTARG ;;
	*) usage ;;
	esac
done
if [ $indiv = false ] && [ $combined = false ]; then
	indiv=true
	combined=true
fi
case $key in
'' | [0-9]* | *[!A-Za-z0-9_]*)
	echo "mk-docker-opts.sh: -k $key is not a shell variable name" >&2
	exit 1
	;;
esac

# The key's current value (the caller's own options) goes first; read it before subnet.env
# could set a variable of the same name.
eval "prior=\${$key-}"

FLANNEL_SUBNET= FLANNEL_MTU= FLANNEL_IPMASQ=
if [ -f "$flannel_env" ]; then
	# shellcheck disable=SC1090
	. "$flannel_env" || exit 1
fi

bip= mtu= masq=
[ -n "$FLANNEL_SUBNET" ] && bip="--bip=$FLANNEL_SUBNET"
[ -n "$FLANNEL_MTU" ] && mtu="--mtu=$FLANNEL_MTU"
if [ -n "$FLANNEL_IPMASQ" ] && [ $ipmasq = true ]; then
	case $FLANNEL_IPMASQ in
	true) masq="--ip-masq=false" ;;
	false) masq="--ip-masq=true" ;;
	*)
		echo "Invalid value of FLANNEL_IPMASQ: $FLANNEL_IPMASQ" >&2
		exit 1
		;;
	esac
fi

# Upstream's layout, byte for byte: variables in name order, and the combined value is the prior
# value plus a space, then " OPT" for each option.
opts=
[ -n "$prior" ] && opts="$prior "
tmp="$docker_env.tmp.$$"
: >"$tmp" || exit 1
for pair in "BIP:$bip" "IPMASQ:$masq" "MTU:$mtu"; do
	name=${pair%%:*}
	value=${pair#*:}
	[ -n "$value" ] || continue
	[ $indiv = true ] && printf 'DOCKER_OPT_%s="%s"\n' "$name" "$value" >>"$tmp"
	opts="$opts $value"
done
[ $combined = true ] && printf '%s="%s"\n' "$key" "$opts" >>"$tmp"
mv -f "$tmp" "$docker_env" || exit 1

# A route to the own subnet via a gateway means another network already claims it.
if [ -n "$FLANNEL_SUBNET" ] && command -v ip >/dev/null 2>&1; then
	last=${FLANNEL_SUBNET##*.}
	host=${last%/*}
	len=${FLANNEL_SUBNET#*/}
	net="${FLANNEL_SUBNET%.*}.$((host - 1))/$len"
	conflict=$(ip route show | grep -F "$net" | grep via)
	if [ -n "$conflict" ]; then
		echo "Your routing table already contains the subnet: $conflict" >&2
		exit 1
	fi
fi
exit 0
