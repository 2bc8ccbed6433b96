# bash completion for otagwctl(1): options, commands, and device serials, which it asks the
# running otagwd for (quietly: nothing is printed and nothing is offered when it is not running).
# Installed as completions/otagwctl, which bash-completion loads the first time it is needed.

# Prints the serials otagwd knows, one per line. $1: the otagwctl being completed; $2: --system
# or --user.
_otagwctl_serials()
{
	local ctl=$1 bus=$2 out re serial
	# otagwctl's JSON is the stable interface; busctl is the fallback when the otagwctl being
	# completed cannot be run. Both are bounded: completion must never hang on a stuck bus.
	if out=$(timeout 3 "$ctl" "$bus" --json devices 2>/dev/null) && [[ $out == \[* ]]; then
		re='"Serial":"([-A-Za-z0-9_]+)"'
	elif out=$(busctl "$bus" --timeout=2 call io.otagw /io/otagw \
		org.freedesktop.DBus.ObjectManager GetManagedObjects 2>/dev/null); then
		# busctl prints a variant as its type and value: "Serial" s "GW-0042".
		re='"Serial" s "([-A-Za-z0-9_]+)"'
	else
		return 0
	fi
	while [[ $out =~ $re ]]; do
		serial=${BASH_REMATCH[1]}
		printf '%s\n' "$serial"
		out=${out#*"${BASH_REMATCH[0]}"}
	done
}

_otagwctl()
{
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
	local options='--json --system --user --help --version'
	local commands='status devices show check abort cache history watch'
	local bus=--system cmd='' nargs=0 all=0 i word

	# Find the bus and the command, and count the command's arguments before the cursor.
	for ((i = 1; i < COMP_CWORD; i++)); do
		word=${COMP_WORDS[i]}
		case $word in
		--system | --user) bus=$word ;;
		-n) i=$((i + 1)) ;; # its value is not an argument
		--all) all=1 ;;
		-*) ;;
		*)
			if [[ -z $cmd ]]; then
				cmd=$word
			else
				nargs=$((nargs + 1))
			fi
			;;
		esac
	done

	COMPREPLY=()
	if [[ $cur == -* ]]; then
		case $cmd in
		check) ((nargs == 0 && !all)) && options+=' --all' ;;
		history) options+=' -n' ;;
		watch) options+=' --until-idle' ;;
		esac
		mapfile -t COMPREPLY < <(compgen -W "$options" -- "$cur")
		return 0
	fi
	[[ $prev == -n && $cmd == history ]] && return 0 # a number

	case $cmd in
	'')
		mapfile -t COMPREPLY < <(compgen -W "$commands" -- "$cur")
		;;
	show | abort | check | history)
		if ((nargs == 0 && !all)); then
			mapfile -t COMPREPLY < <(compgen -W \
			    "$(_otagwctl_serials "${COMP_WORDS[0]}" "$bus")" -- "$cur")
		fi
		;;
	cache)
		((nargs == 0)) && mapfile -t COMPREPLY < <(compgen -W 'purge' -- "$cur")
		;;
	esac
	return 0
}

complete -F _otagwctl otagwctl
