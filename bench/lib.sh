# lib.sh — shell helpers the bench scripts share; source it, do not run it.
# The sourcing script defines say().

# free_port: a loopback TCP port nobody listens on (never 1883), below the
# ephemeral range (32768+) where the generators' own connections take ports.
free_port() {
	local p
	for _ in $(seq 1 200); do
		p=$((20000 + RANDOM % 12000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	say "no free port found"
	return 1
}

# wait_healthy HTTP_PORT PID LOG: until the hub answers /healthz; on failure
# print the end of its log and exit.
wait_healthy() {
	local i
	for i in $(seq 1 600); do
		curl -fsS -o /dev/null "http://127.0.0.1:$1/healthz" 2>/dev/null && return 0
		if ! kill -0 "$2" 2>/dev/null || [ "$i" = 600 ]; then
			say "the hub did not become ready; the end of its log:"
			tail -n 30 "$3" >&2
			exit 1
		fi
		sleep 0.1
	done
}
