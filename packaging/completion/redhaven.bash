# bash completion for redhaven. Generated from cmd/redhaven/commands.go by TestManPage -update; do not edit.
_redhaven() {
    local cur=${COMP_WORDS[COMP_CWORD]} cmd=${COMP_WORDS[1]} words
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=($(compgen -W 'agent check-config status members failover join leave keygen passwd version help --help --version' -- "$cur"))
        return
    fi
    [ "$COMP_CWORD" -gt 2 ] && [ -n "${COMP_WORDS[2]}" ] && [ "${COMP_WORDS[2]#-}" = "${COMP_WORDS[2]}" ] && cmd="$cmd ${COMP_WORDS[2]}"
    case "$cmd" in
        "agent") words='--config --node-name --data-dir --redis-master-name --redis-sentinels --redis-nodes --redis-check-interval --proxy-listen --proxy-readonly-listen --proxy-hold-timeout --proxy-multiplex --cluster-bind --cluster-advertise --cluster-raft-bind --cluster-join --cluster-bootstrap-expect --vip-mode --vip-address --vip-interface --http-listen --log-level --log-format --help' ;;
        "check-config") words='--config --node-name --data-dir --redis-master-name --redis-sentinels --redis-nodes --redis-check-interval --proxy-listen --proxy-readonly-listen --proxy-hold-timeout --proxy-multiplex --cluster-bind --cluster-advertise --cluster-raft-bind --cluster-join --cluster-bootstrap-expect --vip-mode --vip-address --vip-interface --http-listen --log-level --log-format --help' ;;
        "status") words='--socket --addr --user --help' ;;
        "members") words='remove --socket --addr --user --help' ;;
        "members remove") words='--socket --addr --user --help' ;;
        "failover") words='--socket --addr --user --help' ;;
        "join") words='--socket --addr --user --help' ;;
        "leave") words='--socket --addr --user --help' ;;
        "route reset") words='--socket --addr --user --help' ;;
        "backend ready") words='--socket --addr --user --help' ;;
        "backend drain") words='--socket --addr --user --help' ;;
        "backend maintenance") words='--socket --addr --user --help' ;;
        "keys list") words='--socket --addr --user --help' ;;
        "keys install") words='--socket --addr --user --help' ;;
        "keys use") words='--socket --addr --user --help' ;;
        "keys remove") words='--socket --addr --user --help' ;;
        "keygen") words='--help' ;;
        "passwd") words='--help' ;;
        "version") words='--help' ;;
        *) return ;;
    esac
    case "${COMP_WORDS[COMP_CWORD-1]}" in
        -c|--config) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    esac
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -F _redhaven redhaven
