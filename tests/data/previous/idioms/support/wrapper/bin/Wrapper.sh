# A wrapper in the project folder, as slivka-bio's DisEMBL.sh: it checks what the file's
# env names, then writes its command line and environment where the outputs are.
set -e
"$FASTA_4_MAFFT" >/dev/null
{
  printf '%s\n' "$@"
  echo "FASTA_4_MAFFT=$FASTA_4_MAFFT"
  echo "TOOL_DATA=$TOOL_DATA"
  echo "TEMP=$TEMP"
  head -1 input.fasta
} > output.txt
