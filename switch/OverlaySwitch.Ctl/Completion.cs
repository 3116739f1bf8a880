namespace OverlaySwitch.Ctl;

/// <summary>
/// Shell completion without dotnet-suggest (a global tool, not installable offline): the script asks
/// overlayctl itself through System.CommandLine's [suggest:POSITION] directive, which answers with
/// the words that may come at that position, one per line.
/// </summary>
internal static class Completion
{
    public const string Bash = """
        # overlayctl completion for bash: eval "$(overlayctl completion bash)" (or save it in /etc/bash_completion.d/overlayctl)
        _overlayctl_complete() {
            local IFS=$'\n'
            # The directive wants the line without the program's name and the cursor position in it.
            local line="${COMP_LINE#"${COMP_WORDS[0]}"}"
            line="${line# }"
            local position=$(( COMP_POINT - ${#COMP_LINE} + ${#line} ))
            COMPREPLY=( $(compgen -W "$("${COMP_WORDS[0]}" "[suggest:${position}]" "${line}" 2>/dev/null)" -- "${COMP_WORDS[COMP_CWORD]}") )
        }
        complete -o default -F _overlayctl_complete overlayctl

        """;
}
