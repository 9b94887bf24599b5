package demo

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
)

// tool is a program the demo runs and the Debian package that provides it.
type tool struct {
	program, pkg string
}

// requiredTools must all be present.
func requiredTools() []tool {
	return []tool{{"ip", "iproute2"}, {"socat", "socat"}, {"ping", "iputils-ping"}}
}

// redisTools enable the Redis part; without them it is skipped.
func redisTools() []tool {
	return []tool{{"redis-server", "redis-server"}, {"redis-cli", "redis-tools"}}
}

// checkPrereqs checks that the demo runs as root and that the required tools exist. It reports
// whether the optional Redis tools exist too.
func checkPrereqs() (redis bool, err error) {
	if os.Geteuid() != 0 {
		return false, errors.New("the demo needs root to create network namespaces and TUN devices: run it with sudo")
	}
	if missing := missingPackages(requiredTools()); len(missing) > 0 {
		return false, fmt.Errorf("the demo needs the packages %s: install them with: sudo apt-get install %s",
			strings.Join(missing, ", "), strings.Join(missing, " "))
	}
	return len(missingPackages(redisTools())) == 0, nil
}

// missingPackages returns the packages of the tools not found in PATH, each once.
func missingPackages(tools []tool) []string {
	var pkgs []string
	for _, t := range tools {
		if _, err := exec.LookPath(t.program); err != nil && !slices.Contains(pkgs, t.pkg) {
			pkgs = append(pkgs, t.pkg)
		}
	}
	return pkgs
}
