package main

import (
	"context"
	"fmt"
	"io"
	"strings"
)

var completionCommand = &command{
	name: "completion", args: "bash|zsh", min: 1, max: 1,
	summary: "print a shell completion script",
	examples: []string{
		"source <(ocipull completion bash)",
		"ocipull completion zsh > \"${fpath[1]}/_ocipull\"",
	},
	define: func(f *flags, e *env) func(context.Context) error {
		return func(context.Context) error {
			switch e.args[0] {
			case "bash":
				return completionScript(e.stdout, bashTemplate)
			case "zsh":
				return completionScript(e.stdout, zshTemplate)
			}
			return usageErr("want bash or zsh, got %q", safe(e.args[0]))
		}
	},
}

// completionScript fills a template with every command and its flags,
// taken from the commands' own flag sets.
func completionScript(w io.Writer, tmpl string) error {
	var names, cases []string
	for _, c := range commands {
		names = append(names, c.name)
		f, _ := c.flags(&env{})
		cases = append(cases, fmt.Sprintf("    %s) flags=%q ;;", c.name, strings.Join(f.names(), " ")))
	}
	s := strings.ReplaceAll(tmpl, "@COMMANDS@", strings.Join(names, " "))
	s = strings.ReplaceAll(s, "@CASES@", strings.Join(cases, "\n"))
	_, err := io.WriteString(w, s)
	return err
}

const bashTemplate = `# bash completion for ocipull
_ocipull() {
  local cur cmd flags
  cur="${COMP_WORDS[COMP_CWORD]}"
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "@COMMANDS@ help --help --version" -- "$cur"))
    return
  fi
  cmd="${COMP_WORDS[1]}"
  case "$cmd" in
@CASES@
    help) COMPREPLY=($(compgen -W "@COMMANDS@" -- "$cur")); return ;;
    *) flags="" ;;
  esac
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$flags" -- "$cur"))
  else
    COMPREPLY=($(compgen -f -- "$cur"))
  fi
}
complete -o default -F _ocipull ocipull
`

const zshTemplate = `#compdef ocipull
# zsh completion for ocipull
_ocipull() {
  local -a commands flags
  commands=(@COMMANDS@)
  if (( CURRENT == 2 )); then
    compadd -- $commands help --help --version
    return
  fi
  local flags=""
  case "${words[2]}" in
@CASES@
    help) compadd -- $commands; return ;;
  esac
  if [[ "${words[CURRENT]}" == -* ]]; then
    compadd -- ${=flags}
  else
    _files
  fi
}
compdef _ocipull ocipull
`
