#!/bin/bash
# One run of the scale shape by hand (bench.py --only scale is the full
# section): connleak -i 2 --leak-after 0 -q -j OUT.json on handle_holder 1000
# 100 (refused port), 12 s (HOLD=S) with all 100,000 handles live, then VmRSS/VmHWM,
# the snapshot's size, the last reports' CONNLEAK_SCALE_STATS lines and the
# final counts.  usage: bench/scale_once.sh BUILD_DIR OUT_PREFIX
B=$1; OUT=$2
rm -f $OUT.fifo; mkfifo -m 600 $OUT.fifo
( sleep 100000 > $OUT.fifo ) & SL=$!
CONNLEAK_SCALE_STATS=1 $B/connleak -i 2 --leak-after 0 -q -j $OUT.json -- $B/bench/handle_holder 1000 100 "host=127.0.0.1 port=1 connect_timeout=1" < $OUT.fifo > $OUT.out 2> $OUT.err &
CL=$!
for i in $(seq 600); do grep -q ready $OUT.out 2>/dev/null && break; sleep 0.5; done
for i in $(seq 600); do /usr/bin/python3 -c "import json,sys; s=json.load(open('$OUT.json')); sys.exit(0 if s['tracking_stats']['total_active']==100000 else 1)" 2>/dev/null && break; sleep 0.5; done
sleep ${HOLD:-12}  # HOLD=S: longer, past the first reads of every handle
grep VmRSS /proc/$CL/status; grep VmHWM /proc/$CL/status
# BPF map memory: the memlock of each map connleak holds (fdinfo; a map
# shared by both objects has two fds, counted once), summed.
echo "bpf_maps_memlock_bytes $(cat /proc/$CL/fdinfo/* 2>/dev/null | awk '/^map_type/ {m=1} /^memlock/ && m {b=$2} /^map_id/ && m {if (!seen[$2]++) s+=b; m=0} END {print s}')"
/usr/bin/python3 -c "import json; s=json.load(open('$OUT.json')); ps=s['processes']; print('sockets_dropped', sum(p.get('sockets',{}).get('dropped',0) for p in ps), 'processes_with_drops', sum(1 for p in ps if p.get('sockets',{}).get('dropped',0)))"
ls -la $OUT.json
kill $SL
wait $CL; echo exit $?
grep connleak-scale $OUT.err | tail -5
/usr/bin/python3 -c "import json; s=json.load(open('$OUT.json')); print(s['tracking_stats'])"
rm -f $OUT.fifo
