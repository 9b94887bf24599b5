package demo

import (
	"context"
	"fmt"
	"os/exec"
)

// keep prints commands to try and waits until ctx ends (Ctrl-C).
func (d *demo) keep(ctx context.Context) {
	d.p.heading("The network stays up until you press Ctrl-C. In another terminal, try:")
	try := []string{
		"sudo ip netns exec weftdemo-a ping " + ipGamma,
		fmt.Sprintf("sudo %s peers --control %s", d.opts.Binary, d.a.sock),
		fmt.Sprintf("sudo %s routes --control %s", d.opts.Binary, d.a.sock),
		fmt.Sprintf("sudo %s status --control %s", d.opts.Binary, d.b.sock),
		fmt.Sprintf("sudo ip netns exec weftdemo-a socat - TCP:%s:%d", ipGamma, servicePort),
	}
	if d.redis {
		try = append(try, "sudo ip netns exec weftdemo-a redis-cli -h "+ipGamma)
	}
	if d.lanSkip == "" {
		try = append(try, "sudo ip netns exec weftdemo-a ping "+ipLANHost)
	}
	if _, err := exec.LookPath("tcpdump"); err == nil {
		try = append(try, "sudo ip netns exec weftdemo-b tcpdump -ni any udp port 11010   # beta relaying, encrypted")
	}
	for _, t := range try {
		d.p.say("%s", t)
	}
	<-ctx.Done()
}
