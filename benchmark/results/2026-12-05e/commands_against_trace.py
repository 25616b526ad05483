import json,sys,random
d=json.load(open(sys.argv[2]))
ev=[l.split() for l in open(sys.argv[1])]
ins={}; calls={}
for e in ev:
    if e[1]=='mqtt_in': ins.setdefault(e[2],float(e[0]))
    if e[1]=='send_call': calls.setdefault(e[2],float(e[0]))
order=sorted(ins,key=ins.get)
t0=min(ins.values())
rows=[]
for cp in order:
    rows.append((ins[cp]-t0, (calls.get(cp,0)-ins[cp])*1e3))
# estimate published time: i/20 from start; start ~ t0 - base
base=min(t-(i*0.05) for i,(t,_) in enumerate(rows))
for i,(t,dc) in enumerate(rows):
    delay=(t-i*0.05-base)*1e3
    if delay>8 or dc>8: print(f"cmd {i} t={t:.3f} broker_delay={delay:.1f}ms to_call={dc:.1f}ms")
print("slowest", d['connector']['commands']['slowest'][:6])
