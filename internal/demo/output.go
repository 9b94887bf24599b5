package demo

import (
	"fmt"
	"io"
	"strings"
)

// ANSI codes, used only when the output is a terminal.
const (
	bold  = "\x1b[1m"
	green = "\x1b[32m"
	red   = "\x1b[31m"
	dim   = "\x1b[2m"
	reset = "\x1b[0m"
)

// printer writes the demo's plain-text story: headings, explanations, commands and their output.
// Write errors are ignored: there is no one else to tell.
type printer struct {
	w     io.Writer
	color bool
}

func (p *printer) paint(code, s string) string {
	if !p.color {
		return s
	}
	return code + s + reset
}

// heading starts a section.
func (p *printer) heading(title string) {
	fmt.Fprintf(p.w, "\n%s\n", p.paint(bold, "== "+title))
}

// say prints one line of explanation.
func (p *printer) say(format string, args ...any) {
	fmt.Fprintf(p.w, "   %s\n", fmt.Sprintf(format, args...))
}

// command shows a command about to run on a host.
func (p *printer) command(host, cmdline string) {
	fmt.Fprintf(p.w, "   %s\n", p.paint(dim, "["+host+"] $ "+cmdline))
}

// block prints command output, indented, without blank lines.
func (p *printer) block(text string) {
	for _, line := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		if strings.TrimSpace(line) != "" {
			fmt.Fprintf(p.w, "     %s\n", line)
		}
	}
}

// ok marks a passed check.
func (p *printer) ok(format string, args ...any) {
	fmt.Fprintf(p.w, "   %s %s\n", p.paint(green, "ok:"), fmt.Sprintf(format, args...))
}

// fail marks a failed check.
func (p *printer) fail(format string, args ...any) {
	fmt.Fprintf(p.w, "   %s %s\n", p.paint(red, "FAIL:"), fmt.Sprintf(format, args...))
}

// line prints an unindented line.
func (p *printer) line(format string, args ...any) {
	fmt.Fprintf(p.w, "%s\n", fmt.Sprintf(format, args...))
}
